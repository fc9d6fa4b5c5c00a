// "Wrong? Pick the right class" (only with FEEDBACK_PUBLIC=1): each answered card can send the
// true label of its image to /v1/feedback, which keeps it as a public label for the next model.
(function () {
  "use strict";

  var script = document.currentScript;
  var endpoint = (script && script.dataset.endpoint) || "/v1/feedback";
  var labelsByModel = {};

  function labels(model) {
    if (!labelsByModel[model]) {
      labelsByModel[model] = fetch("/v2/models/" + encodeURIComponent(model), { headers: { Accept: "application/json" } })
        .then(function (response) {
          if (!response.ok) throw new Error("HTTP " + response.status);
          return response.json();
        })
        .then(function (metadata) { return metadata.parameters.labels; });
    }
    return labelsByModel[model];
  }

  function send(form, body, select) {
    var button = form.querySelector("button");
    var status = form.querySelector(".wrong-status");
    button.disabled = true;
    status.textContent = "Sending…";
    fetch(endpoint, {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify({ id: body.request_id, index: 0, label: select.value })
    })
      .then(function (response) {
        return response.json().catch(function () { return null; }).then(function (answer) {
          if (!response.ok) throw new Error(answer && answer.error ? answer.error : "HTTP " + response.status);
          status.textContent = "Thank you: recorded as " + answer.label + ".";
        });
      })
      .catch(function (err) {
        status.textContent = "Not recorded: " + err.message;
        button.disabled = false;
      });
  }

  document.getElementById("results").addEventListener("classified", function (event) {
    var card = event.target;
    var body = event.detail;
    var form = card.querySelector("form.wrong");
    var select = form.querySelector("select");
    labels(body.model_name).then(function (names) {
      names.forEach(function (name) {
        var option = document.createElement("option");
        option.value = option.textContent = name;
        select.appendChild(option);
      });
      select.value = body.results[0].top_k[0].label;
      form.hidden = false;
    }).catch(function () { /* no labels, no form: the answer stands as it is */ });
    form.addEventListener("submit", function (submitted) {
      submitted.preventDefault();
      send(form, body, select);
    });
  });
})();
