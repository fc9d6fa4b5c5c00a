"""store/ sits below service/ and training/: both import it, it imports neither (nor Flask, nor TensorFlow)."""
from __future__ import annotations

import ast

from tests.harness import ROOT

FORBIDDEN = ("service", "training", "flask", "tensorflow", "keras")


def test_the_store_imports_neither_the_service_nor_training():
    for path in (ROOT / "store").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            for name in names:
                assert name.split(".")[0] not in FORBIDDEN, f"{path.name} imports {name}"
