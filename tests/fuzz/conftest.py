"""The fuzzers' figures, printed after the run: CI logs show how much was tried, not just that it passed."""
from __future__ import annotations

import sys
from collections import defaultdict


def pytest_terminal_summary(terminalreporter):
    module = sys.modules.get("tests.fuzz.test_schemathesis")  # imported only if its tests were collected
    sent = getattr(module, "SENT", None)
    if not sent:
        return
    by_operation: dict[str, dict[int, int]] = defaultdict(dict)
    for (operation, status), count in sorted(sent.items()):
        by_operation[operation][status] = count
    terminalreporter.section("schemathesis")
    for operation, statuses in by_operation.items():
        counts = ", ".join(f"{status}: {n}" for status, n in statuses.items())
        terminalreporter.write_line(f"{sum(statuses.values()):>5}  {operation}  ({counts})")
    terminalreporter.write_line(f"{sum(sent.values()):>5}  requests, {len(by_operation)} operations")
