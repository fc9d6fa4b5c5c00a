"""The pages for people in a real browser: Debian's chromium driven by Playwright, against the real
service (`python -m service`, gunicorn and all) serving a copy of the committed model.

Needs: /usr/bin/chromium (apt package `chromium`; Playwright never downloads a browser here), the
`playwright` Python package, the Fashion-MNIST test set (/usr/share/datasets/fashion-mnist), and
the trained model in models/fashion-mnist. A missing one fails the test and says what to install.
Screenshots go to artifacts/ at the repository root (gitignored), for people and CI to look at.
`WEB_DOCS_SCREENSHOT=1 python -m pytest tests/integration/test_web.py` also refreshes docs/screenshot.png.
"""
from __future__ import annotations

import io
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import requests
import yaml
from PIL import Image, ImageOps

import modelrepo
from tests.harness import ROOT, start_server
from tests.tiny_model import publish_tiny
from training.data import DEFAULT_DIR, FILES, IMAGES_MAGIC, LABELS_MAGIC, read_idx

MODEL = "fashion-mnist"
MODELS = ROOT / "models"
ARTIFACTS = ROOT / "artifacts"
DOCS_SCREENSHOT = ROOT / "docs" / "screenshot.png"
DOCS_SCREENSHOT_MAX_BYTES = 150_000
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
CANDIDATES = 50  # test images tried when looking for one the model gets right, raw and as a photo
TIMEOUT_MS = 15_000


def _require(ok: bool, message: str) -> None:
    if not ok:
        pytest.fail(message, pytrace=False)


# -- fixtures -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def repository(tmp_path_factory) -> Path:
    """A copy of the committed model (the served files are not touched by the test)."""
    versions = modelrepo.list_versions(MODELS, MODEL)
    _require(bool(versions), f"{MODELS / MODEL} has no version folder: the web test needs the trained model "
             "(train and publish it with `python -m training.train`, or check out the committed models/)")
    repository = tmp_path_factory.mktemp("web") / "models"
    shutil.copytree(MODELS / MODEL, repository / MODEL, ignore=shutil.ignore_patterns(".*"))
    return repository


@pytest.fixture(scope="module")
def server(repository):
    """The real service on the committed model, shared by this module (overrides conftest's tiny-model `server`)."""
    server = start_server(repository, repository.parent, WEB_CONCURRENCY="1", INTRA_OP_THREADS="1", THREADS="8")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def served(repository) -> dict:
    """metadata.json of the version the server must be serving (the newest)."""
    version = modelrepo.newest_version(repository, MODEL)
    return json.loads((modelrepo.version_dir(repository, MODEL, version) / modelrepo.METADATA_FILE).read_text())


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def _photo(pixels: np.ndarray) -> bytes:
    """The same item as a product photo: dark on white, 280 × 280, RGB JPEG."""
    image = ImageOps.invert(Image.fromarray(pixels, mode="L")).resize((280, 280), Image.Resampling.LANCZOS).convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def samples(server, served, tmp_path_factory) -> dict:
    """A Fashion-MNIST test image the model classifies right both as is and as a photo, on disk."""
    images_path, labels_path = DEFAULT_DIR / FILES["test_images"], DEFAULT_DIR / FILES["test_labels"]
    _require(images_path.is_file() and labels_path.is_file(),
             f"Fashion-MNIST test set missing in {DEFAULT_DIR} (Debian package dataset-fashion-mnist)")
    images = read_idx(images_path, IMAGES_MAGIC, (28, 28))[:CANDIDATES]
    truth = read_idx(labels_path, LABELS_MAGIC, ())[:CANDIDATES]
    files = [("image", (f"raw-{i}.png", _png(p), "image/png")) for i, p in enumerate(images)]
    files += [("image", (f"photo-{i}.jpg", _photo(p), "image/jpeg")) for i, p in enumerate(images)]
    response = requests.post(f"{server.url}/v1/classify?top_k=1", files=files, timeout=60)
    assert response.status_code == 200, response.text
    predicted = [r["top_k"][0]["class_id"] for r in response.json()["results"]]
    right = [i for i in range(CANDIDATES) if predicted[i] == truth[i] == predicted[CANDIDATES + i]]
    _require(bool(right), f"the served model gets none of the first {CANDIDATES} test images right both as is and as a "
             "photo: is models/fashion-mnist a trained model?")
    index = right[0]
    label = served["labels"][truth[index]]
    slug = re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")
    folder = tmp_path_factory.mktemp("uploads")
    raw, photo, broken = folder / f"{slug}.png", folder / f"{slug}-photo.jpg", folder / "broken.png"
    raw.write_bytes(_png(images[index]))
    photo.write_bytes(_photo(images[index]))
    broken.write_bytes(b"this is a text file, not a PNG\n")
    return {"label": label, "raw": raw, "photo": photo, "broken": broken}


@pytest.fixture(scope="module")
def browser():
    _require(CHROMIUM.is_file(), f"{CHROMIUM} missing: install Debian's chromium (apt-get install -y chromium)")
    try:
        from playwright.sync_api import sync_playwright  # noqa: PLC0415
    except ImportError:
        pytest.fail("the playwright Python package is missing (pip install playwright; no browser download needed)", pytrace=False)
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


class Page:
    """A fresh browser page that records JavaScript and console errors (CSP violations among them) and
    any request leaving the server. The 400 answer to the broken upload is expected."""

    def __init__(self, browser, server, **viewport):
        self.context = browser.new_context(viewport=viewport or {"width": 1280, "height": 900}, device_scale_factor=1)
        self.context.set_default_timeout(TIMEOUT_MS)
        self.outside: list[str] = []
        self.js_errors: list[str] = []
        self.context.route(re.compile(r"^(?!" + re.escape(server.url) + r"/).*"), self._block)
        self.page = self.context.new_page()
        self.page.on("pageerror", lambda exc: self.js_errors.append(str(exc)))
        self.page.on("console", self._console)
        # File chooser interception starts asynchronously with the first listener: start it now, well
        # before any key press, or a chooser opened quickly after `expect_file_chooser` can be missed.
        self.page.on("filechooser", lambda chooser: None)

    def _console(self, message):
        if message.type == "error" and not message.text.startswith("Failed to load resource: the server responded with a status of 400 "):
            self.js_errors.append(message.text)

    def _block(self, route):
        self.outside.append(route.request.url)
        route.abort()

    def close(self) -> None:
        self.context.close()
        assert self.js_errors == [], f"JavaScript errors: {self.js_errors}"
        assert self.outside == [], f"requests outside the server (the pages must not need the internet): {self.outside}"


@pytest.fixture
def page(browser, server):
    opened: list[Page] = []

    def open_page(**viewport):
        opened.append(Page(browser, server, **viewport))
        return opened[-1].page

    yield open_page
    for p in opened:
        p.close()


def _save_docs_screenshot(png: bytes) -> None:
    """The README's screenshot: a palette PNG, small enough to commit."""
    image = Image.open(io.BytesIO(png)).convert("RGB").quantize(colors=64, method=Image.Quantize.MEDIANCUT)
    DOCS_SCREENSHOT.parent.mkdir(exist_ok=True)
    image.save(DOCS_SCREENSHOT, optimize=True)
    assert DOCS_SCREENSHOT.stat().st_size < DOCS_SCREENSHOT_MAX_BYTES


def _wait_for_cards(page, count: int) -> list:
    page.wait_for_function(
        "n => document.querySelectorAll('#results .card').length === n && "
        "[...document.querySelectorAll('#results .card .pending')].every(p => p.hidden)", arg=count)
    return page.locator("#results .card").all()


# -- the classifier page --------------------------------------------------------------------------


@pytest.mark.slow  # drives Chromium
def test_classify_page_keyboard_upload_shows_labels_version_and_model_input(page, server, served, samples):
    page = page()
    page.goto(server.url + "/")
    assert page.locator("h1").inner_text()
    # A real <label> names the file input, and the page links to the model card and the docs.
    assert page.get_by_label("Choose images…").get_attribute("id") == "file-input"
    assert page.get_by_label("Labels to show per image").get_attribute("id") == "top-k"
    assert page.locator("a[href='/model']").count() and page.locator("a[href='/docs']").count()

    # Keyboard only: Tab reaches the picker, Space opens it.
    for _ in range(15):
        if page.evaluate("document.activeElement && document.activeElement.id") == "file-input":
            break
        page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "file-input", "the file picker is not reachable with Tab"
    outline = page.evaluate("getComputedStyle(document.querySelector('label[for=file-input]')).outlineStyle")
    assert outline != "none", "the focused picker has no visible focus indicator"
    with page.expect_file_chooser() as chooser:
        page.keyboard.press("Space")
    assert chooser.value.is_multiple()
    chooser.value.set_files([samples["raw"], samples["photo"]])

    cards = _wait_for_cards(page, 2)
    version = str(served["version"])
    for card, path in zip(cards, (samples["raw"], samples["photo"])):
        assert card.locator(".filename").inner_text() == path.name
        assert card.locator(".top-k .best .label").inner_text() == samples["label"]
        assert re.fullmatch(r"\d+(\.\d)?%", card.locator(".top-k .best .probability").inner_text())
        assert card.locator(".top-k li").count() == 3
        assert card.locator(".answered-by").inner_text() == f"Model {MODEL}, version {version}"
        seen = card.locator(".preprocessed img")
        assert seen.is_visible()
        assert seen.evaluate("img => [img.complete, img.naturalWidth, img.naturalHeight]") == [True, 28, 28]
        assert seen.evaluate("img => getComputedStyle(img).imageRendering") == "pixelated"
        assert seen.evaluate("img => img.getBoundingClientRect().width") >= 28 * 3
    assert re.search(rf"2 images classified by {MODEL} version {version}\.", page.locator("#status").inner_text())
    assert not page.locator("#error").is_visible()
    for alt in page.locator("img").evaluate_all("imgs => imgs.map(i => i.alt)"):
        assert alt.strip(), "an image without alt text"
    page.evaluate("document.activeElement.blur()")
    png = page.screenshot(path=ARTIFACTS / "web-results-desktop.png", full_page=True)
    if os.environ.get("WEB_DOCS_SCREENSHOT"):
        _save_docs_screenshot(png)

    # An unreadable file: the server's message on its card, and a summary, both as alerts.
    page.set_input_files("#file-input", samples["broken"])
    cards = _wait_for_cards(page, 3)
    message = cards[2].locator(".card-error")
    assert message.is_visible() and message.get_attribute("role") == "alert"
    assert "not an image format" in message.inner_text()
    summary = page.locator("#error")
    assert summary.is_visible() and summary.get_attribute("role") == "alert"
    assert "could not be classified" in summary.inner_text()
    page.screenshot(path=ARTIFACTS / "web-error.png", full_page=True)

    page.get_by_role("button", name="Clear results").click()
    assert page.locator("#results .card").count() == 0


@pytest.mark.slow  # drives Chromium
def test_drop_zone_and_phone_width(page, server, samples):
    page = page(width=390, height=844)
    page.goto(server.url + "/")
    page.select_option("#top-k", "5")
    page.focus("#file-input")
    with page.expect_file_chooser():  # Enter opens the picker too
        page.keyboard.press("Enter")
    data = samples["photo"].read_bytes()
    transfer = page.evaluate_handle(
        """([name, bytes]) => {
            const transfer = new DataTransfer();
            transfer.items.add(new File([new Uint8Array(bytes)], name, {type: "image/jpeg"}));
            return transfer;
        }""", [samples["photo"].name, list(data)])
    page.dispatch_event("#drop-zone", "dragenter", {"dataTransfer": transfer})
    assert "dragging" in page.locator("#drop-zone").get_attribute("class")
    page.dispatch_event("#drop-zone", "drop", {"dataTransfer": transfer})
    [card] = _wait_for_cards(page, 1)
    assert card.locator(".top-k li").count() == 5
    assert card.locator(".top-k .best .label").inner_text() == samples["label"]
    # Nothing wider than the phone: no sideways scrolling.
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    page.screenshot(path=ARTIFACTS / "web-results-phone.png", full_page=True)


# -- the model card and the docs ------------------------------------------------------------------


@pytest.mark.slow  # drives Chromium
def test_model_card(page, server, served, repository):
    page = page()
    page.goto(server.url + "/model")
    evaluation = served["evaluation"]
    _require(evaluation is not None, "the committed model has no evaluation in metadata.json")
    assert f"{evaluation['test_accuracy'] * 100:.2f}%" in page.locator("#test-accuracy").inner_text()
    assert page.locator("#model-version").inner_text().startswith(str(served["version"]))
    rows = page.locator("#per-class tbody tr")
    assert rows.count() == len(served["labels"]) == len(evaluation["per_class"])
    assert rows.first.locator("th").inner_text() == evaluation["per_class"][0]["label"]
    report = modelrepo.version_dir(repository, MODEL, served["version"]) / "report"
    for name in ("confusion_matrix.png", "training_curves.png"):
        image = page.locator(f"img[src$='/{name}']")
        if (report / name).is_file():
            assert image.evaluate("img => img.complete && img.naturalWidth > 0"), f"{name} did not load"
        else:
            assert image.count() == 0
    training = page.locator("section[aria-labelledby=training-title] dt").all_inner_texts()
    assert set(served["training"]) - {"history", "commands"} <= set(training) and "history" not in training
    # The commands that made the version: one copyable line each, not a comma-joined dump.
    commands = served["training"].get("commands", [])
    if commands:
        assert page.locator("pre.commands").inner_text().splitlines() == commands
        assert "commands" not in training
    versions = page.locator("#versions tbody tr")
    assert versions.count() == len(modelrepo.list_versions(repository, MODEL))
    assert "READY" in versions.first.inner_text()
    page.screenshot(path=ARTIFACTS / "web-model-card.png", full_page=True)


def test_report_route_serves_only_report_files_of_existing_versions(server, served):
    version = served["version"]
    ok = requests.get(f"{server.url}/model/report/{version}/confusion_matrix.png", timeout=10)
    if ok.status_code != 404:  # a model may have no report; then the route must not make one up
        assert ok.status_code == 200 and ok.headers["Content-Type"] == "image/png"
    for path in (f"{version + 1}/confusion_matrix.png", f"0{version}/confusion_matrix.png", "x/confusion_matrix.png",
                 f"{version}/..%2Fmetadata.json", f"{version}/%2E%2E/model.onnx", f"{version}/..%2F..%2F{version}%2Fmetadata.json"):
        response = requests.get(f"{server.url}/model/report/{path}", timeout=10)
        assert response.status_code == 404, path
        assert "sha256" not in response.text


@pytest.mark.slow  # drives Chromium
def test_docs_render_swagger_ui_for_every_endpoint(page, server):
    page = page()
    page.goto(server.url + "/docs")
    page.wait_for_selector(".swagger-ui .opblock-summary-path")
    paths = set(page.locator(".opblock-summary-path").evaluate_all("els => els.map(e => e.dataset.path || e.innerText)"))
    expected = {"/v1/classify", "/v1/models/{name}/classify", "/v2/health/live", "/v2/health/ready", "/v2",
                "/v2/models/{name}", "/v2/models/{name}/infer", "/v2/repository/index",
                "/v2/repository/models/{name}/load", "/v2/repository/models/{name}/unload", "/metrics"}
    assert expected <= {p.replace("\u200b", "") for p in paths}
    page.screenshot(path=ARTIFACTS / "web-docs.png")


@pytest.fixture
def tiny_app(tmp_path):
    """The app in-process (no gunicorn, no browser) on a tiny model: evaluation without per-class metrics, no report."""
    from service.app import create_app  # noqa: PLC0415
    from service.settings import Settings  # noqa: PLC0415

    repository = tmp_path / "models"
    publish_tiny(repository)
    app = create_app(Settings.from_env({}, model_repository=repository, reload_poll_seconds=0, intra_op_threads=1))
    yield app
    app.extensions["poller"].stop()


def test_model_card_without_evaluation_report_or_served_version(tiny_app):
    client, models = tiny_app.test_client(), tiny_app.extensions["models"]
    page = client.get("/model")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "91.00%" in html and "No per-class metrics were recorded" in html and "No confusion matrix" in html
    assert "<img" not in html
    assert client.get("/model/report/1/confusion_matrix.png").status_code == 404

    publish_tiny(tiny_app.extensions["settings"].model_repository, seed=1, accuracy=None)
    models.refresh(MODEL)
    html = client.get("/model").get_data(as_text=True)
    assert "Not evaluated" in html and ">2 <span" in html

    models.unload(MODEL)  # not served: the card shows the newest version on disk, and says so
    page = client.get("/model")
    assert page.status_code == 200 and "not being served" in page.get_data(as_text=True)


def test_spec_documents_every_api_route(server, tiny_app):
    """The spec and the server agree: every API route is in the spec with its methods, and nothing else."""
    spec = yaml.safe_load(requests.get(f"{server.url}/openapi.yaml", timeout=10).text)
    assert spec["openapi"].startswith("3.")
    app = tiny_app
    routes: dict[str, set[str]] = {}
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static" or rule.endpoint.startswith("web."):
            continue
        path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule.rule)
        routes.setdefault(path, set()).update(m.lower() for m in rule.methods - {"HEAD", "OPTIONS"})
    documented = {path: {m for m in item if m in ("get", "post", "put", "delete", "patch")} for path, item in spec["paths"].items()}
    assert documented == routes
    for ref in re.findall(r'\$ref: "#/([^"]+)"', (ROOT / "service" / "openapi.yaml").read_text()):
        node = spec
        for part in ref.split("/"):
            node = node[part]  # KeyError: a $ref to nothing


# -- public feedback ------------------------------------------------------------------------------


@pytest.mark.slow  # drives Chromium
def test_with_public_feedback_a_visitor_can_correct_an_answer(browser, repository, samples, tmp_path, eventually):
    import store  # noqa: PLC0415

    url = f"sqlite:///{tmp_path / 'captures.db'}"
    public = start_server(repository, tmp_path, WEB_CONCURRENCY="1", FEEDBACK_PUBLIC="1", CAPTURE_URL=url)
    opened = Page(browser, public)
    engine = store.connect(url)
    try:
        page = opened.page
        page.goto(public.url + "/")
        page.set_input_files("#file-input", samples["raw"])
        (card,) = _wait_for_cards(page, 1)
        form = card.locator("form.wrong")
        form.wait_for(state="visible")
        choice = page.get_by_label("Wrong? Pick the right class")
        assert choice.input_value() == samples["label"]  # the answer, until the visitor picks another
        truth = "Bag" if samples["label"] != "Bag" else "Sandal"
        choice.select_option(truth)
        # The capture is written within a second of the answer; a visitor takes longer.
        eventually(lambda: store.count(engine) == 1, what="the capture written")
        form.get_by_role("button", name="Send").click()
        page.wait_for_function("card => card.querySelector('.wrong-status').textContent.startsWith('Thank you')",
                               arg=card.element_handle())
        (labelled,) = store.labelled(engine, 0, 1e12)
        assert labelled.label_source == "public" and labelled.predicted != labelled.label
    finally:
        opened.close()
        engine.dispose()
        public.stop()
