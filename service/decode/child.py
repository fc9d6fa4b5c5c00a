"""`python -m service.decode.child MEMORY_MB`: a decoder process, limited by the kernel, serving one worker.

It reads jobs from stdin and writes replies to stdout, one at a time, until stdin closes (its
worker is gone). The limits are set here, after the imports and a warm-up decode (so that they
bound the images, not Python's start), and are enforced by the kernel whatever the decoder does:

  memory  RLIMIT_AS: the address space may grow by MEMORY_MB beyond the idle process. An
          allocation past it fails: Pillow raises, and the reply says "out of memory".
  CPU     each job's budget arms ITIMER_PROF, whose SIGPROF (no handler: the default action)
          ends the process after that much CPU time even inside C code; RLIMIT_CPU, a whole
          second past the budget, is the backstop (SIGXCPU).
  core    RLIMIT_CORE 0: a crash or SIGXCPU leaves no core file behind.
The worker bounds wall time itself, and kills and replaces a process that dies or overruns.
"""
from __future__ import annotations

import io
import math
import os
import resource
import signal
import sys
import time

from PIL import Image

from service.decode import pixels
from service.decode.wire import EXIT_OUT_OF_MEMORY, JOB, READY, Reply, read_exact, write_reply


# Freed when an allocation fails, so that the reply itself can be built: without it, a MemoryError
# raised deep in Pillow's TIFF parser once took the process down before it could answer.
RESERVE_BYTES = 4 * 1024 * 1024
_reserve = bytearray()


def _vm_size() -> int:
    """The process's address space now, in bytes."""
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmSize:"))
    return int(line.split()[1]) * 1024


def _warm_up() -> None:
    # Pillow imports a format's plugin on first use: that memory belongs to the idle process.
    for fmt in pixels.FORMATS:
        buffer = io.BytesIO()
        Image.new("RGB", (8, 8)).save(buffer, format=fmt)
        pixels.decode(buffer.getvalue(), 1024, 1024, side=8)


def _arm(cpu_seconds: float) -> None:
    used = time.process_time()
    soft = math.ceil(used + cpu_seconds) + 1
    resource.setrlimit(resource.RLIMIT_CPU, (soft, resource.getrlimit(resource.RLIMIT_CPU)[1]))
    signal.setitimer(signal.ITIMER_PROF, cpu_seconds)


def _disarm() -> None:
    signal.setitimer(signal.ITIMER_PROF, 0)


def _serve(job: bytes, image_cap: int, pixels_left: int, side: int) -> Reply:
    try:
        small, orientation, cost = pixels.decode(job, image_cap, pixels_left, side)
        return Reply.success(small, orientation, cost)
    except (MemoryError, pixels.OutOfMemory) as exc:
        _reserve.clear()  # room to answer; the process retires after it (its heap may stay large)
        return Reply.failure(exc if isinstance(exc, pixels.OutOfMemory) else pixels.OutOfMemory("decoding"), retire=True)
    except pixels.DecodeError as exc:
        return Reply.failure(exc)


def main() -> None:
    memory_mb = int(sys.argv[1])
    _warm_up()
    _reserve.extend(bytes(RESERVE_BYTES))
    limit = _vm_size() + memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    stdout.write(READY)
    stdout.flush()
    while True:
        head = read_exact(stdin, JOB.size)
        if head is None:
            return  # the worker closed the pipe: it is gone or replacing us
        cpu_seconds, image_cap, pixels_left, side, length = JOB.unpack(head)
        data = read_exact(stdin, length) or b""
        start = time.process_time()
        _arm(cpu_seconds)
        try:
            reply = _serve(data, image_cap, pixels_left, side)
            _disarm()
            reply.cpu_seconds = time.process_time() - start
            write_reply(stdout, reply)
        except MemoryError:
            os._exit(EXIT_OUT_OF_MEMORY)
        if reply.retire:
            return


if __name__ == "__main__":
    main()
