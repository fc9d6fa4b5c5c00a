"""The benchmarks end to end (`python -m benchmarks --quick`: raw runs, the naive baseline, the real service twice,
wrk, the results file), both load generators, and the reading of py-spy profiles."""
from __future__ import annotations

import json
import math
import re
import subprocess
import sys

import pytest

from benchmarks import payloads, raw, servers, stacks
from benchmarks.generators import RUNNERS
from tests.harness import ROOT
from tests.tiny_model import publish_tiny

pytestmark = pytest.mark.slow  # runs the benchmarks

HEADER = ("| kind | scenario | batching | concurrency | img/request | img/s | req/s | p50 ms | p99 ms | errors | vs raw | vs naive "
          "| CPU s per worker |")
SERVICE = ["v1 png", "v2 json", "v2 binary x64"]
NAIVE = ["instances json", "instances json x64"]
CONCURRENCIES = ("1", "8")
KIND, SCENARIO, BATCHING, CONCURRENCY, IMAGES, IMG_S, ERRORS, VS_RAW, VS_NAIVE, CPU = 0, 1, 2, 3, 4, 5, 9, 10, 11, 12


def test_quick_benchmark_writes_the_table(tmp_path):
    repository = tmp_path / "models"
    publish_tiny(repository, "fashion-mnist")
    publish_tiny(repository, "fashion-mnist-int8", seed=1)
    out = tmp_path / "results.md"

    result = subprocess.run([sys.executable, "-m", "benchmarks", "--quick", "--repository", str(repository), "--out", str(out)],
                            cwd=ROOT, capture_output=True, text=True, timeout=150)
    assert result.returncode == 0, result.stderr

    text = out.read_text()
    assert HEADER in text and "- command:" in text and "wrk -t1" in text
    assert re.search(r"- cpu: .+; avx2 (yes|no), avx512_vnni (yes|no), amx (yes|no)", text)
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in text.splitlines()
            if re.match(r"\| (raw|naive|service) \|", line)]
    raw = {r[SCENARIO]: float(r[IMG_S]) for r in rows if r[KIND] == "raw"}
    assert set(raw) == {"fp32 batch 1", "fp32 batch 64", "int8 batch 1", "int8 batch 64"}
    naive = {(r[IMAGES], r[CONCURRENCY]): float(r[IMG_S]) for r in rows if r[KIND] == "naive"}
    assert {(r[SCENARIO], r[CONCURRENCY]) for r in rows if r[KIND] == "naive"} == {(s, c) for s in NAIVE for c in CONCURRENCIES}
    service = [r for r in rows if r[KIND] == "service"]
    assert {(r[SCENARIO], r[BATCHING], r[CONCURRENCY]) for r in service} == {
        (s, b, c) for s in SERVICE for b in ("on", "off") for c in CONCURRENCIES}

    for row in rows:
        assert float(row[IMG_S]) > 0, row
        assert row[ERRORS] == "0", row
    # vs raw: batch 64 for 64-image rows, the best fp32 batch size otherwise; vs naive: the same
    # images per request and concurrency. Loose tolerance: img/s is printed rounded.
    best = max(raw["fp32 batch 1"], raw["fp32 batch 64"])
    for row in service + [r for r in rows if r[KIND] == "naive"]:
        reference = raw["fp32 batch 64"] if row[IMAGES] == "64" else best
        assert math.isclose(float(row[VS_RAW]), float(row[IMG_S]) / reference, rel_tol=0.05), row
        assert math.isclose(float(row[VS_NAIVE]), float(row[IMG_S]) / naive[row[IMAGES], row[CONCURRENCY]], rel_tol=0.05), row
        assert re.fullmatch(r"\d+\.\d(/\d+\.\d)*", row[CPU]), row  # one figure per worker
    assert result.stdout.count("| service |") == len(service)  # the same table is printed


def test_wrk_and_hey_count_successes_and_failures(tmp_path):
    """Both load generators against the naive app: 200s count as ok, 4xx as errors, with latencies."""
    repository = tmp_path / "models"
    publish_tiny(repository, "fashion-mnist")
    good = payloads.naive_payloads(payloads.test_images())[0]
    bad = payloads.Payload("bad json", "/predict", "application/json", b"{not json", 1)
    with servers.naive(raw.newest_model(repository, "fashion-mnist"), tmp_path, workers=1) as server:
        for generator, run in RUNNERS.items():
            ok = run(server.url, good, tmp_path, 2, 1)
            assert ok.ok > 0 and ok.errors == 0 and 0 < ok.p50_ms <= ok.p99_ms, (generator, ok)
            failed = run(server.url, bad, tmp_path, 2, 1)
            assert failed.ok == 0 and failed.errors > 0, (generator, failed)


def test_profile_summary_tells_working_from_waiting(tmp_path):
    """benchmarks.profile's reading of a py-spy speedscope file: blocked threads are waits, not work."""
    frames = [{"name": "_worker", "file": "/usr/lib/python3.11/concurrent/futures/thread.py", "line": 81},
              {"name": "infer", "file": str(ROOT / "service/routes/inference.py"), "line": 70},
              {"name": "Session.run", "file": "/venv/lib/python3.11/site-packages/onnxruntime/capi/session.py", "line": 406},
              {"name": "Condition.wait", "file": "/usr/lib/python3.11/threading.py", "line": 327}]
    samples = [([0, 1, 2], 0.03), ([0, 1, 3], 0.01), ([0], 0.06)]  # run, wait for a batch, idle pool thread
    profile = {"type": "sampled", "name": "Thread 1", "unit": "seconds", "startValue": 0.0, "endValue": 0.1,
               "samples": [s for s, _ in samples], "weights": [w for _, w in samples]}
    path = tmp_path / "profile.speedscope.json"
    path.write_text(json.dumps({"shared": {"frames": frames}, "profiles": [profile]}))

    recorded = stacks.read_speedscope(path)
    assert math.isclose(recorded.seconds, 0.03) and math.isclose(sum(recorded.waiting.values()), 0.07)
    tables = stacks.tables(recorded)
    assert list(tables["package"]) == ["onnxruntime"]
    assert list(tables["own"]) == ["Session.run (onnxruntime/capi/session.py)"]
    assert "infer (service/routes/inference.py)" in tables["total"]
    assert tables["waits"].most_common(1)[0][0].startswith("_worker (concurrent/futures/thread.py:81)")
    assert "## Where threads wait" in stacks.summary(recorded)
    assert stacks.folded(recorded.working).splitlines() == [
        "_worker (concurrent/futures/thread.py:81);infer (service/routes/inference.py:70);"
        "Session.run (onnxruntime/capi/session.py:406) 30"]
