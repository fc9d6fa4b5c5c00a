"""What a worker and its decoder processes say to each other over a pipe: one job, one reply.

A job is JOB (CPU budget, per-image pixel cap, pixels left to the request, the model's side, byte
count) and the
file's bytes. A reply is REPLY (kind, retire flag, CPU used, pixels counted, lengths), a JSON
head and a body: the small image's raw pixels, or the error's message.
"""
from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import BinaryIO

from PIL import Image

from service.decode import pixels

JOB = struct.Struct("<dQQIQ")
REPLY = struct.Struct("<B?dQII")
OK = 0
# A decoder's exit status when it ran out of memory even for its answer (service/decode/child.py).
EXIT_OUT_OF_MEMORY = 3
# What a decoder writes once, when its limits are set and it waits for jobs.
READY = b"R"
ERRORS: tuple[type[pixels.DecodeError], ...] = (pixels.Unreadable, pixels.Corrupt, pixels.TooManyPixels,
                                                 pixels.OverRequest, pixels.OutOfMemory)


@dataclass
class Reply:
    kind: int  # OK, or 1 + the index of the error's type in ERRORS
    head: dict
    body: bytes
    cost: int = 0
    retire: bool = False  # the process exits after this reply
    cpu_seconds: float = 0.0

    @classmethod
    def success(cls, small: Image.Image, orientation: int | None, cost: int) -> "Reply":
        return cls(OK, {"mode": small.mode, "size": small.size, "orientation": orientation}, small.tobytes(), cost)

    @classmethod
    def failure(cls, error: pixels.DecodeError, retire: bool = False) -> "Reply":
        return cls(1 + ERRORS.index(type(error)), {}, str(error).encode(), retire=retire)

    def result(self) -> tuple[Image.Image, int | None, int]:
        """What pixels.decode() returned in the process; raises what it raised."""
        if self.kind != OK:
            raise ERRORS[self.kind - 1](self.body.decode(errors="replace"))
        return Image.frombytes(self.head["mode"], tuple(self.head["size"]), self.body), self.head["orientation"], self.cost


def job(data: bytes, cpu_seconds: float, image_cap: int, pixels_left: int, side: int) -> bytes:
    """A job's bytes, as the process reads them."""
    return JOB.pack(cpu_seconds, image_cap, max(0, pixels_left), side, len(data)) + data


def reply_parts(head: bytes) -> tuple[int, bool, float, int, int, int]:
    return REPLY.unpack(head)


def parse_reply(fixed: tuple[int, bool, float, int, int, int], meta: bytes, body: bytes) -> Reply:
    kind, retire, cpu_seconds, cost, _, _ = fixed
    return Reply(kind, json.loads(meta) if meta else {}, body, cost, retire, cpu_seconds)


def write_reply(out: BinaryIO, reply: Reply) -> None:
    meta = json.dumps(reply.head).encode() if reply.head else b""
    out.write(REPLY.pack(reply.kind, reply.retire, reply.cpu_seconds, reply.cost, len(meta), len(reply.body)) + meta + reply.body)
    out.flush()


def read_exact(source: BinaryIO, n: int) -> bytes | None:
    """n bytes from a blocking stream, or None at its end."""
    data = source.read(n)
    return data if data is not None and len(data) == n else None
