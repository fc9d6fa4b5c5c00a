"""What a worker and its decoder processes spend on some requests: CPU seconds and added peak RSS, from /proc.

CPU: the worker's utime + stime, plus cutime + cstime (the decoders it killed and reaped), plus
each live decoder's utime + stime; a decoder started meanwhile counts whole (its start-up is
part of the cost). Memory: each process's VmHWM, sampled every few milliseconds (a decoder that
is killed takes its last figure with it); the sum over processes of what each added to its own
peak, a new decoder's whole peak, the worker's and the `decoders` largest of the decoders' (a
killed one is reaped before its replacement starts): a bound, from above, on their peak together.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path

SAMPLE_SECONDS = 0.005
_TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str]:
    # The fields after the command name's ")": utime [11], stime [12], cutime [13], cstime [14].
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def _own_cpu(pid: int) -> float:
    fields = _stat(pid)
    return (int(fields[11]) + int(fields[12])) / _TICK


def _reaped_cpu(pid: int) -> float:
    fields = _stat(pid)
    return (int(fields[13]) + int(fields[14])) / _TICK


def peak_rss_mb(pid: int) -> float:
    line = next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


def children(pid: int) -> list[int]:
    try:
        return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


class Tally:
    """Started before the requests and stopped after them: (CPU seconds, added peak RSS MB) of a worker and its decoders."""

    def __init__(self, worker: int, decoders: int):
        self.worker = worker
        self.decoders = decoders
        self._start_cpu = _own_cpu(worker) + _reaped_cpu(worker)
        self._before = {pid: (peak_rss_mb(pid), _own_cpu(pid)) for pid in [worker, *children(worker)]}
        self._peaks = dict((pid, peak) for pid, (peak, _) in self._before.items())
        self._cpu: dict[int, float] = {}
        self._done = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()

    def _sample(self) -> None:
        while not self._done.wait(SAMPLE_SECONDS):
            self._read()

    def _read(self) -> None:
        for pid in [self.worker, *children(self.worker)]:
            try:
                self._peaks[pid] = max(self._peaks.get(pid, 0.0), peak_rss_mb(pid))
                if pid != self.worker:
                    self._cpu[pid] = _own_cpu(pid)
            except (OSError, StopIteration):  # it ended between the listing and the read
                continue

    def stop(self) -> tuple[float, float]:
        self._done.set()
        self._sampler.join()
        self._read()
        live = set(children(self.worker))
        cpu = _own_cpu(self.worker) + _reaped_cpu(self.worker) - self._start_cpu
        cpu += sum(used - self._before.get(pid, (0.0, 0.0))[1] for pid, used in self._cpu.items() if pid in live)
        # A decoder from before that was reaped brought its whole life into cutime: not its past.
        cpu -= sum(used for pid, (_, used) in self._before.items() if pid != self.worker and pid not in live)
        added = {pid: peak - self._before.get(pid, (0.0, 0.0))[0] for pid, peak in self._peaks.items()}
        # A killed decoder is reaped before its replacement starts: at most `decoders` of them live
        # at once, so the largest `decoders` of their peaks bound what they held together.
        decoders = sorted((mb for pid, mb in added.items() if pid != self.worker), reverse=True)[:self.decoders]
        return cpu, added[self.worker] + sum(decoders)
