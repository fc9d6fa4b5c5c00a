"""python -m benchmarks.json_cost: the worker CPU that adversarial 8 MiB JSON bodies cost.

Each body is just under MAX_REQUEST_BYTES and built to make a JSON reader work hardest: nesting
past the depth limit, unclosed strings of escaped quotes (what made the last nesting check
quadratic), millions of tiny array elements, objects or keys, long strings. One request each to
/v2/models/fashion-mnist/infer on a fresh one-worker service; the row is the worker's CPU
seconds for that request (utime + stime from /proc). Target: at most 1 s each.

Figures, not a test.
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import requests

from benchmarks.report import markdown
from benchmarks.servers import cpu_seconds
from tests.harness import ROOT, start_server

SIZE = 8 * 1024 * 1024 - 1024
TARGET_S = 1.0


def _fill(prefix: bytes, unit: bytes, suffix: bytes = b"") -> bytes:
    return prefix + unit * ((SIZE - len(prefix) - len(suffix)) // len(unit)) + suffix


def _tensor(data: bytes, shape: str = "[1, 28, 28, 1]") -> bytes:
    head = b'{"inputs": [{"name": "images", "datatype": "FP32", "shape": ' + shape.encode() + b', "data": ['
    return _fill(head, data, b"0]}]}")


BODIES = {
    "nesting: 4 million '['": _fill(b"", b"["),
    "nesting past the limit, then a flat array": b"[" * 40 + _fill(b"", b"0,", b"0") + b"]" * 40,
    "unclosed string of escaped quotes": _fill(b'[' * 40 + b'{"id":"', b'\\"'),
    "escaped backslashes and quotes": _fill(b'{"id":' + b"[" * 40 + b'"', b'\\\\\\"'),
    "4 million zeros in one tensor": _tensor(b"0,"),
    "floats with long mantissas": _tensor(b"0.123456789012345678901234567890,"),
    "150,000 inputs": _fill(b'{"inputs": [', b'{"name":"a","shape":[1],"datatype":"FP32","data":[0]},',
                            b'{"name":"a","shape":[1],"datatype":"FP32","data":[0]}]}'),
    "a million parameters": _fill(b'{"parameters": {', b'"k0000001": 1,', b'"z": 1}, "inputs": []}'),
    "one 8 MiB string": _fill(b'{"id": "', b"a", b'", "inputs": []}'),
    "a million empty objects": _fill(b'{"inputs": [{"name": "images", "datatype": "FP32", "shape": [1], "data": [', b"{},",
                                     b"{}]}]}"),
}


def main() -> None:
    rows = [["body (8 MiB)", "status", "worker CPU s", f"under {TARGET_S:g} s"]]
    with tempfile.TemporaryDirectory(prefix="json-cost-") as tmp_name:
        tmp = Path(tmp_name)
        shutil.copytree(ROOT / "models", tmp / "models", ignore=shutil.ignore_patterns(".lock", ".reports"))
        server = start_server(tmp / "models", tmp, WEB_CONCURRENCY="1")
        try:
            (worker,) = server.workers()
            for name, body in BODIES.items():
                before = cpu_seconds([worker])
                response = requests.post(f"{server.url}/v2/models/fashion-mnist/infer", data=body, timeout=300,
                                         headers={"Content-Type": "application/json"})
                spent = cpu_seconds([worker]) - before
                rows.append([name, str(response.status_code), f"{spent:.2f}", "yes" if spent <= TARGET_S else "NO"])
                print(" | ".join(rows[-1]), flush=True)
        finally:
            server.stop()
    print("\n" + markdown(rows))


if __name__ == "__main__":
    main()
