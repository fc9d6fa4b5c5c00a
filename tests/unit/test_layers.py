"""The house's layering (.importlinter) holds, and a wrong import breaks it: import-linter's contracts."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
PACKAGES = ("service", "training", "modelrepo", "store")


def lint_imports(tree: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=tree, env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=120)


def test_the_tree_keeps_every_contract():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(("path", "line", "contract"), [
    ("service/batcher.py", "import flask", "Flask is the app's and the routes' alone"),
    ("service/errors.py", "from werkzeug.exceptions import HTTPException", "Flask is the app's and the routes' alone"),
    ("service/runtime.py", "from service.routes import models", "service: front door"),
    ("service/images.py", "from service.app import create_app", "service: front door"),
    ("service/tensors.py", "import training.contract", "the service never imports TensorFlow or training"),
    ("service/models.py", "import tensorflow", "the service never imports TensorFlow or training"),
    ("training/contract.py", "import flask", "training never imports Flask or the service"),
    ("store/schema.py", "import service.settings", "the capture store imports neither"),
    ("modelrepo/schema.py", "import store", "the model repository's format imports none"),
])
def test_a_wrong_import_breaks_its_contract(tmp_path: Path, path: str, line: str, contract: str):
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__", "static", "templates"))
    shutil.copy(ROOT / ".importlinter", tmp_path)
    with open(tmp_path / path, "a") as source:
        source.write(f"\n{line}\n")
    result = lint_imports(tmp_path)
    assert result.returncode != 0, result.stdout
    report = " ".join(result.stdout.split())  # contract names are wrapped at 80 columns
    assert "0 broken" not in report, result.stdout
    assert contract in report.split("Broken contracts", 1)[1], result.stdout
