"""A worker's pool of decoder processes: limited by the kernel, killed and replaced when they overrun.

Each process is `python -m service.decode.child`, started with fork+exec (subprocess, no
preexec_fn), so nothing of the worker's onnxruntime threads or Flask state is inherited. A job
waits for an idle process at most `wait` seconds (then Busy: the client is asked to retry), and
runs for at most `timeout` seconds of wall time once its process is ready (then the process is
killed; a new process has START_SECONDS to say it is ready, or the job is Busy). A process that
dies, overruns or retires is replaced before the next job can take it, so the pool never
shrinks and never holds more than `processes` decodes' memory at once.
"""
from __future__ import annotations

import logging
import os
import queue
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from service.decode import wire
from service.decode.wire import EXIT_OUT_OF_MEMORY

log = logging.getLogger(__name__)
# The directory holding the `service` package: a decoder imports it whatever the worker's cwd.
_ROOT = str(Path(__file__).resolve().parents[2])
# Signals that mean "past its CPU budget": ITIMER_PROF's, and RLIMIT_CPU's soft limit (the backstop).
_CPU_SIGNALS = (signal.SIGPROF, signal.SIGXCPU)
# Seconds a new decoder process may take to say it is ready (it takes 0.3 s on an idle 2-core EPYC).
START_SECONDS = 30.0


class Busy(Exception):
    """No decoder process became idle in time."""


class Overrun(Exception):
    """A decoder process was killed by one of its limits, or died; `limit` says which: 'cpu', 'memory', 'time' or 'crash'."""

    def __init__(self, limit: str, detail: str):
        super().__init__(detail)
        self.limit = limit


@dataclass(frozen=True)
class Limits:
    processes: int
    memory_mb: int
    timeout: float  # wall seconds for one image
    wait: float  # seconds a job waits for an idle process


class _Process:
    """One decoder process and its pipes."""

    def __init__(self, memory_mb: int):
        env = os.environ | {"PYTHONPATH": os.pathsep.join(filter(None, [_ROOT, os.environ.get("PYTHONPATH")]))}
        self.popen = subprocess.Popen([sys.executable, "-m", "service.decode.child", str(memory_mb)], env=env,
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=_ROOT)
        os.set_blocking(self.popen.stdin.fileno(), False)
        os.set_blocking(self.popen.stdout.fileno(), False)
        self.ready = False

    @property
    def pid(self) -> int:
        return self.popen.pid

    def run(self, job: bytes, timeout: float) -> wire.Reply:
        """Send a job and read its reply within `timeout` seconds of the process being ready; raises Overrun or Busy."""
        if not self.ready:
            self._await_start()
        deadline = time.monotonic() + timeout
        try:
            self._write(job, deadline)
            fixed = wire.reply_parts(self._read(wire.REPLY.size, deadline))
            meta = self._read(fixed[4], deadline)
            return wire.parse_reply(fixed, meta, self._read(fixed[5], deadline))
        except (BrokenPipeError, EOFError):
            raise self._overrun() from None

    def _await_start(self) -> None:
        # A new process imports Pillow and warms up first (0.3 s, more on a loaded host): that is
        # not the image's time.
        try:
            if self._read(len(wire.READY), time.monotonic() + START_SECONDS) == wire.READY:
                self.ready = True
                return
        except (EOFError, Overrun):
            pass
        self.kill()
        raise Busy(f"a new decoder process did not start within {START_SECONDS:g} s")

    def _write(self, data: bytes, deadline: float) -> None:
        fd, view = self.popen.stdin.fileno(), memoryview(data)
        while view:
            self._wait(fd, select.POLLOUT, deadline)
            view = view[os.write(fd, view):]

    def _read(self, n: int, deadline: float) -> bytes:
        fd, chunks = self.popen.stdout.fileno(), []
        while n:
            self._wait(fd, select.POLLIN, deadline)
            chunk = os.read(fd, min(n, 1 << 20))
            if not chunk:
                raise EOFError
            chunks.append(chunk)
            n -= len(chunk)
        return b"".join(chunks)

    def _wait(self, fd: int, event: int, deadline: float) -> None:
        poller = select.poll()
        poller.register(fd, event)
        left = deadline - time.monotonic()
        if left <= 0 or not poller.poll(left * 1000):
            self.kill()
            raise Overrun("time", "its wall-time deadline passed")

    def _overrun(self) -> Overrun:
        code = self.popen.wait()
        if -code in _CPU_SIGNALS:
            return Overrun("cpu", f"killed by {signal.Signals(-code).name}")
        if code == EXIT_OUT_OF_MEMORY:
            return Overrun("memory", "out of memory even for its answer")
        what = signal.Signals(-code).name if code < 0 else f"exit status {code}"
        return Overrun("crash", f"the decoder process ended ({what})")

    def kill(self) -> None:
        """End the process now and reap it."""
        if self.popen.poll() is None:
            self.popen.kill()
        self.popen.wait()
        self.popen.stdin.close()
        self.popen.stdout.close()


class Sandbox:
    """`processes` decoder processes per worker; started in the worker, after gunicorn's fork."""

    def __init__(self, limits: Limits):
        self.limits = limits
        # None: a process to start when a job takes it (its replacement failed to start).
        self._idle: queue.LifoQueue[_Process | None] = queue.LifoQueue()
        for _ in range(limits.processes):
            self._idle.put(_Process(limits.memory_mb))

    def close(self) -> None:
        """End the idle processes (the others end when their job does: their pipes close with the worker)."""
        while True:
            try:
                process = self._idle.get_nowait()
            except queue.Empty:
                return
            if process:
                process.kill()

    def pids(self) -> list[int]:
        """The idle decoder processes' pids (for benchmarks and tests)."""
        return [process.pid for process in list(self._idle.queue) if process]

    def decode(self, data: bytes, cpu_seconds: float, image_cap: int, pixels_left: int, side: int) -> wire.Reply:
        """Run one image's decode in an idle process; raises Busy or Overrun."""
        try:
            process = self._idle.get(timeout=self.limits.wait) or self._start()
        except queue.Empty:
            raise Busy(f"{self.limits.processes} decoder processes busy for {self.limits.wait:g} s") from None
        if process is None:
            self._idle.put(None)
            raise Busy("no decoder process could be started")
        reply = None
        try:
            reply = process.run(wire.job(data, cpu_seconds, image_cap, pixels_left, side), self.limits.timeout)
            return reply
        finally:
            if reply is None or reply.retire:
                process.kill()
                log.warning("decoder process %s replaced (%s)", process.pid, "out of memory" if reply else "overrun")
                process = self._start()
            self._idle.put(process)

    def _start(self) -> _Process | None:
        try:
            return _Process(self.limits.memory_mb)
        except OSError:  # out of processes or memory: the next job tries again
            log.exception("a decoder process could not be started")
            return None
