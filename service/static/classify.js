// The classifier page: pick or drop images, POST each one to /v1/classify?explain=1, show the answers.
// One request per image, a few at a time, so that one unreadable file does not hide the others' results.
(function () {
  "use strict";

  var script = document.currentScript;
  var endpoint = (script && script.dataset.endpoint) || "/v1/classify";
  var PARALLEL = 4;

  var form = document.getElementById("classify-form");
  var input = document.getElementById("file-input");
  var zone = document.getElementById("drop-zone");
  var topK = document.getElementById("top-k");
  var clearButton = document.getElementById("clear");
  var statusBox = document.getElementById("status");
  var errorBox = document.getElementById("error");
  var results = document.getElementById("results");
  var template = document.getElementById("result-template");
  var objectUrls = [];

  function percent(p) {
    var value = p * 100;
    return (value >= 99.95 || value < 0.05 ? value.toFixed(0) : value.toFixed(1)) + "%";
  }

  function showError(message) {
    errorBox.textContent = message;
    errorBox.hidden = !message;
  }

  function errorMessage(response, body) {
    if (body && typeof body.error === "string") return body.error;
    return "The server answered " + response.status + " " + (response.statusText || "") + ".";
  }

  function makeCard(file) {
    var card = template.content.firstElementChild.cloneNode(true);
    var name = file.name || "pasted image";
    card.querySelector(".filename").textContent = name;
    var original = card.querySelector(".original img");
    var url = URL.createObjectURL(file);
    objectUrls.push(url);
    original.src = url;
    original.alt = "Your image " + name;
    original.addEventListener("error", function () {
      // Formats the browser cannot show (or broken files): keep the card, drop the preview.
      card.querySelector(".original").hidden = true;
    });
    results.appendChild(card);
    return card;
  }

  function fillCard(card, body) {
    var result = body.results[0];
    var pending = card.querySelector(".pending");
    pending.hidden = true;
    card.querySelector(".answered-by").textContent = "Model " + body.model_name + ", version " + body.model_version;
    card.dataset.modelVersion = body.model_version;
    var list = card.querySelector(".top-k");
    result.top_k.forEach(function (entry, i) {
      var item = document.createElement("li");
      if (i === 0) item.className = "best";
      var row = document.createElement("div");
      row.className = "label-row";
      var label = document.createElement("span");
      label.className = "label";
      label.textContent = entry.label;
      var value = document.createElement("span");
      value.className = "probability";
      value.textContent = percent(entry.probability);
      row.appendChild(label);
      row.appendChild(value);
      var bar = document.createElement("div");
      bar.className = "bar";
      bar.setAttribute("aria-hidden", "true");
      var fill = document.createElement("div");
      fill.className = "fill";
      fill.style.width = Math.max(0, Math.min(100, entry.probability * 100)).toFixed(1) + "%";
      bar.appendChild(fill);
      item.appendChild(row);
      item.appendChild(bar);
      list.appendChild(item);
    });
    list.hidden = false;
    var best = result.top_k[0];
    card.dataset.label = best.label;
    if (result.preprocessed_png) {
      var seen = card.querySelector(".preprocessed");
      var img = seen.querySelector("img");
      img.src = "data:image/png;base64," + result.preprocessed_png;
      img.alt = "What the model saw: " + (card.querySelector(".filename").textContent) +
        " as a 28 by 28 pixel grayscale image, light item on a dark background";
      seen.hidden = false;
    }
  }

  function failCard(card, message) {
    card.classList.add("failed");
    card.querySelector(".pending").hidden = true;
    var box = card.querySelector(".card-error");
    box.textContent = message;
    box.hidden = false;
  }

  function classify(file, card, k) {
    var data = new FormData();
    data.append("image", file, file.name || "image");
    var url = endpoint + "?explain=1&top_k=" + encodeURIComponent(k);
    return fetch(url, { method: "POST", body: data, headers: { Accept: "application/json" } })
      .then(function (response) {
        return response.json().catch(function () { return null; }).then(function (body) {
          if (!response.ok || !body || !body.results) throw new Error(errorMessage(response, body));
          fillCard(card, body);
          // feedback.js (public feedback on) offers "Wrong? Pick the right class" on the card.
          card.dispatchEvent(new CustomEvent("classified", { bubbles: true, detail: body }));
          return body;
        });
      })
      .catch(function (err) {
        var message = err instanceof TypeError ? "Could not reach the server: " + err.message : err.message;
        failCard(card, "Could not classify this image: " + message);
        return null;
      });
  }

  function handle(fileList) {
    var files = Array.prototype.slice.call(fileList || []);
    showError("");
    if (!files.length) {
      showError("No file was selected. Choose or drop one or more image files.");
      return;
    }
    var k = topK.value;
    var cards = files.map(makeCard);
    clearButton.hidden = false;
    statusBox.textContent = "Classifying " + files.length + (files.length === 1 ? " image…" : " images…");
    var next = 0, answered = [], failed = 0;

    function worker() {
      if (next >= files.length) return Promise.resolve();
      var i = next++;
      return classify(files[i], cards[i], k).then(function (body) {
        if (body) answered.push(body); else failed += 1;
        return worker();
      });
    }

    var workers = [];
    for (var w = 0; w < Math.min(PARALLEL, files.length); w++) workers.push(worker());
    Promise.all(workers).then(function () {
      var parts = [];
      if (answered.length) {
        var last = answered[answered.length - 1];
        parts.push(answered.length + (answered.length === 1 ? " image" : " images") +
          " classified by " + last.model_name + " version " + last.model_version + ".");
      }
      statusBox.textContent = parts.join(" ");
      if (failed) {
        showError(failed + (failed === 1 ? " image" : " images") + " could not be classified; see the message on " +
          (failed === 1 ? "its card." : "their cards."));
      }
    });
  }

  form.addEventListener("submit", function (event) { event.preventDefault(); handle(input.files); });
  input.addEventListener("change", function () {
    if (input.files && input.files.length) handle(input.files);
    input.value = "";  // choosing the same file again fires "change" again
  });

  // Space opens a focused file input natively; Enter does not in every browser (or submits the form).
  input.addEventListener("keydown", function (event) {
    if (event.key === "Enter") { event.preventDefault(); input.click(); }
  });

  // The whole zone is a click target too; the label inside is the keyboard-focusable control's name.
  zone.addEventListener("click", function (event) {
    if (event.target === zone || event.target.classList.contains("drop-text") || event.target.closest(".drop-icon")) input.click();
  });
  ["dragenter", "dragover"].forEach(function (type) {
    zone.addEventListener(type, function (event) {
      event.preventDefault();
      if (event.dataTransfer) event.dataTransfer.dropEffect = "copy";
      zone.classList.add("dragging");
    });
  });
  ["dragleave", "dragend"].forEach(function (type) {
    zone.addEventListener(type, function (event) {
      if (!zone.contains(event.relatedTarget)) zone.classList.remove("dragging");
    });
  });
  zone.addEventListener("drop", function (event) {
    event.preventDefault();
    zone.classList.remove("dragging");
    handle(event.dataTransfer && event.dataTransfer.files);
  });
  // A drop that misses the zone must not navigate away to the file.
  window.addEventListener("dragover", function (event) { event.preventDefault(); });
  window.addEventListener("drop", function (event) { event.preventDefault(); });

  // Pasting an image (e.g. a screenshot) works too.
  document.addEventListener("paste", function (event) {
    var files = event.clipboardData && event.clipboardData.files;
    if (files && files.length) { event.preventDefault(); handle(files); }
  });

  clearButton.addEventListener("click", function () {
    results.textContent = "";
    objectUrls.forEach(URL.revokeObjectURL);
    objectUrls = [];
    statusBox.textContent = "Results cleared.";
    showError("");
    clearButton.hidden = true;
    input.focus();
  });
})();
