"""Read a py-spy speedscope file (recorded with --idle): working vs waiting samples, folded stacks,
own and total time per function and per package, and where threads wait.

py-spy's own idle detection keeps many blocked threads (a gthread pool's queue.get, Condition.wait)
as "active" on this machine, so every thread is sampled and classified here instead: a sample
waits when its deepest Python frame is a known blocking call. A thread waiting for the GIL still
counts as working, at the line it is on.
"""
from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

# Deepest Python frames that block: the worker pool's queue, condition variables, selectors, accept.
WAITS = frozenset({"_worker", "Condition.wait", "Event.wait", "Thread.join", "Thread._wait_for_tstate_lock",
                   "EpollSelector.select", "PollSelector.select", "SelectSelector.select", "socket.accept", "SyncWorker.wait"})
_ROOT = str(Path(__file__).resolve().parents[1]) + "/"

Stack = tuple[str, ...]  # frame labels "function (file:line)", root first


@dataclass(frozen=True)
class Profile:
    working: Counter[Stack]  # stack → thread-seconds sampled
    waiting: Counter[Stack]
    duration: float  # seconds of wall time recorded

    @property
    def seconds(self) -> float:
        return sum(self.working.values())


def _short(file: str) -> str:
    # py-spy's speedscope frames carry full paths; keep the package part, as its raw format does.
    for marker in ("site-packages/", "dist-packages/"):
        if marker in file:
            return file.split(marker, 1)[1]
    if file.startswith(_ROOT):
        return file[len(_ROOT):]
    stdlib = re.search(r"/lib/python3\.\d+/(.+)$", file)
    if stdlib:
        return stdlib.group(1)
    return file.rsplit("/", 1)[-1]  # a native library: libc.so.6, libpython3.11.so.1.0


def _name(label: str) -> str:
    return label.split(" (", 1)[0]


def _is_python(label: str) -> bool:
    return bool(re.search(r"\.py(:\d+)?\)$", label)) or "(<frozen " in label


def read_speedscope(path: Path) -> Profile:
    """py-spy writes one sampled profile per thread; each sample lists frame indices, root first."""
    document = json.loads(path.read_text())
    labels = [f"{f['name']} ({_short(f['file'])}:{f['line']})" if f.get("line") else f"{f['name']} ({_short(f['file'])})"
              for f in document["shared"]["frames"]]
    working: Counter[Stack] = Counter()
    waiting: Counter[Stack] = Counter()
    duration = 0.0
    for profile in document["profiles"]:
        duration = max(duration, profile["endValue"] - profile["startValue"])
        for sample, weight in zip(profile["samples"], profile["weights"]):
            stack = tuple(labels[i] for i in sample)
            deepest_python = next((label for label in reversed(stack) if _is_python(label)), "")
            (waiting if _name(deepest_python) in WAITS else working)[stack] += weight
    return Profile(working, waiting, duration)


def folded(stacks: Counter[Stack]) -> str:
    """Brendan Gregg's folded format (flamegraph.pl, inferno, speedscope), in milliseconds."""
    return "".join(f"{';'.join(stack)} {round(seconds * 1000)}\n" for stack, seconds in sorted(stacks.items()) if seconds)


def _function(label: str) -> str:
    # "handle (gunicorn/workers/gthread.py:279)" → "handle (gunicorn/workers/gthread.py)": one row per function.
    return re.sub(r":\d+\)$", ")", label)


def _package(label: str) -> str:
    file = label.rsplit(" (", 1)[-1].rstrip(")").rsplit(":", 1)[0]
    return file.split("/", 1)[0] if "/" in file else file.removesuffix(".py")


def tables(profile: Profile) -> dict[str, Counter[str]]:
    """Working seconds by package and function (own: the leaf frame; total: anywhere on the stack), waits by call site."""
    own, total, packages, waits = Counter(), Counter(), Counter(), Counter()
    for stack, seconds in profile.working.items():
        own[_function(stack[-1])] += seconds
        packages[_package(stack[-1])] += seconds
        for function in {_function(label) for label in stack}:  # a recursive function counts once
            total[function] += seconds
    for stack, seconds in profile.waiting.items():
        python = [label for label in stack if _is_python(label)]
        waits[" ← ".join(reversed(python[-3:]))] += seconds  # the blocking call and the two frames above it
    return {"package": packages, "own": own, "total": total, "waits": waits}


def summary(profile: Profile, top: int = 30) -> str:
    """Markdown: where the working time goes (per package, per function) and where threads wait."""
    t, whole = tables(profile), profile.seconds or 1.0

    def rows(counter: Counter[str], what: str, reference: float) -> str:
        lines = [f"| % | thread-seconds | {what} |", "| ---: | ---: | --- |"]
        lines += [f"| {100 * s / reference:.1f} | {s:.2f} | `{name}` |" for name, s in counter.most_common(top)]
        return "\n".join(lines)

    waited = sum(profile.waiting.values())
    busy = f"{profile.seconds / profile.duration:.2f}" if profile.duration else "?"
    return (f"- working: {profile.seconds:.2f} thread-seconds in {profile.duration:.1f} s (≈ {busy} Python threads busy "
            f"on average; onnxruntime's own pool threads are not sampled); waiting: {waited:.2f} thread-seconds\n\n"
            f"## Working time per package (the leaf frame's file; % of working time)\n\n{rows(t['package'], 'package', whole)}\n\n"
            f"## Top {top} functions by own time\n\n{rows(t['own'], 'function', whole)}\n\n"
            f"## Top {top} functions by total time (anywhere on the stack)\n\n{rows(t['total'], 'function', whole)}\n\n"
            f"## Where threads wait (% of waiting time; blocking call ← callers)\n\n{rows(t['waits'], 'call site', waited or 1.0)}\n")
