"""`python -m benchmarks --quick` end to end: raw runs, the real service twice, hey, the results file."""
from __future__ import annotations

import re
import subprocess
import sys

from service.testing import ROOT
from tests.tiny_model import publish_tiny

SCENARIOS = ["v1 png", "v2 json", "v2 binary x64"]


def test_quick_benchmark_writes_the_table(tmp_path):
    repository = tmp_path / "models"
    publish_tiny(repository, "fashion-mnist")
    publish_tiny(repository, "fashion-mnist-int8", seed=1)
    out = tmp_path / "results.md"

    result = subprocess.run([sys.executable, "-m", "benchmarks", "--quick", "--repository", str(repository), "--out", str(out)],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr

    text = out.read_text()
    assert "| kind | scenario | batching |" in text and "- machine:" in text and "- command:" in text
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in text.splitlines() if re.match(r"\| (raw|service) \|", line)]
    raw = {r[1] for r in rows if r[0] == "raw"}
    assert raw == {"fp32 batch 1", "fp32 batch 64", "int8 batch 1", "int8 batch 64"}
    service = {(r[1], r[2], r[3]) for r in rows if r[0] == "service"}
    assert service == {(s, b, c) for s in SCENARIOS for b in ("on", "off") for c in ("1", "8")}
    for row in rows:
        assert float(row[5]) > 0, row  # img/s
        assert row[9] == "0", row  # errors
    assert result.stdout.count("| service |") == len(service)  # the same table is printed
