"""The cheap look at a file's first bytes that decides where it decodes, and refuses the obvious bombs.

In process (the fast path) only when the cost is bounded by what the header says: a PNG, GIF,
BMP or baseline JPEG (one scan per component at most) of at most FAST_BYTES and FAST_PIXELS.
For these formats Pillow's work is linear in the bytes it reads and the pixels it writes, with
no repeated passes over the image (progressive and multi-scan JPEGs, the one such trick among
them, never qualify), so a file's cost is at most (worst cost per byte) × FAST_BYTES + (worst
cost per pixel) × FAST_PIXELS, and its memory a few canvases of FAST_PIXELS (1 MB as RGBA).
Measured on the 2-core AMD EPYC: the costliest bytes are PNG chunks (Pillow parses each in
Python): 16 KiB of empty ones cost 5.2 ms of CPU (compressed text and ICC chunks, which
Pillow inflates, would cost 47 ms: a PNG that has any is not admitted); 256×256 pixels cost at most 0.7 ms (GIF
noise), 0.2 ms as PNG or JPEG; the benchmark's 28×28 PNG 0.04 ms. A request decodes at most
FAST_REQUEST_BYTES in process (16 such floods: 0.08 s, on top of DECODE_CPU_SECONDS); the
rest goes to the decoder processes, whose limits the kernel enforces.
Anything this module cannot read goes to the decoder processes too. The checks of
`refuse_costly` only answer the known progressive-JPEG bombs sooner and by name: the bound
holds without them (tests/unit/test_sandbox.py).
"""
from __future__ import annotations

import math
import struct
from typing import NamedTuple

FAST_BYTES = 16 * 1024
FAST_PIXELS = 256 * 256
FAST_REQUEST_BYTES = 256 * 1024
# A progressive JPEG with more scans than this is refused before decoding: each scan walks every
# block again (0.8 ms per scan of a 4000×4000 image); libjpeg's default script writes 10 for
# colour, 6 for gray.
MAX_JPEG_SCANS = 256
# JPEG segments walked looking for the frame header; a file with more goes to a decoder process.
_JPEG_SEGMENTS = 64
_SOF = {0xC0: False, 0xC1: False, 0xC2: True, 0xC3: False, 0xC5: False, 0xC6: True, 0xC7: False,
        0xC9: False, 0xCA: True, 0xCB: False, 0xCD: False, 0xCE: True, 0xCF: False}  # marker → progressive


class Header(NamedTuple):
    format: str
    width: int
    height: int
    progressive: bool = False
    components: tuple[tuple[int, int], ...] = ()  # JPEG: each component's sampling factors

    @property
    def pixels(self) -> int:
        return self.width * self.height


class Refused(Exception):
    """A header that promises a cost no decoder should pay; `limit` is the one it would pass ('memory', 'cpu')."""

    def __init__(self, limit: str, message: str):
        super().__init__(message)
        self.limit = limit


def header(data: bytes) -> Header | None:
    """Format and size from the first bytes, for PNG, GIF, BMP and JPEG; None for anything else."""
    if data.startswith(b"\x89PNG\r\n\x1a\n") and data[12:16] == b"IHDR" and len(data) >= 24:
        return Header("PNG", *struct.unpack(">II", data[16:24]))
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        return Header("GIF", *struct.unpack("<HH", data[6:10]))
    if data.startswith(b"BM") and len(data) >= 26 and struct.unpack("<I", data[14:18])[0] >= 40:
        width, height = struct.unpack("<ii", data[18:26])
        return Header("BMP", abs(width), abs(height))
    if data.startswith(b"\xff\xd8\xff"):
        return _jpeg(data)
    return None


def _jpeg(data: bytes) -> Header | None:
    at = 2
    for _ in range(_JPEG_SEGMENTS):
        if at + 4 > len(data) or data[at] != 0xFF:
            return None
        marker, length = data[at + 1], struct.unpack(">H", data[at + 2:at + 4])[0]
        if marker in _SOF and at + 10 <= len(data):
            height, width, count = struct.unpack(">HHB", data[at + 5:at + 10])
            table = data[at + 10:at + 10 + 3 * count]
            components = tuple((table[i + 1] >> 4, table[i + 1] & 15) for i in range(0, len(table) - 2, 3))
            return Header("JPEG", width, height, _SOF[marker], components)
        at += 2 + length
    return None


def in_process(data: bytes, found: Header | None, fast_bytes_left: int) -> bool:
    """Whether the file may decode in the worker: small, few pixels, one pass (see the module's docstring)."""
    if found is None or len(data) > min(FAST_BYTES, fast_bytes_left) or found.pixels > FAST_PIXELS or found.pixels == 0:
        return False
    if found.format == "PNG":
        # Pillow inflates these chunks when it opens a file, up to 1 MB each: a 16 KiB PNG of them
        # costs 47 ms. Found anywhere in the bytes, they send the file away.
        return b"zTXt" not in data and b"iTXt" not in data and b"iCCP" not in data
    if found.format == "JPEG":
        # The count of SOS markers may include an EXIF thumbnail's: that only sends more files away.
        return not found.progressive and data.count(b"\xff\xda") <= len(found.components)
    return True


def refuse_costly(data: bytes, found: Header | None, memory_mb: int) -> None:
    """Raise Refused for a progressive JPEG whose coefficients or scans no decoder should hold or walk."""
    if found is None or found.format != "JPEG" or not found.progressive or not found.components:
        return
    # libjpeg keeps every DCT coefficient of a progressive file, 2 bytes each, whatever scale is asked.
    h_max = max(h for h, _ in found.components) or 1
    v_max = max(v for _, v in found.components) or 1
    blocks = sum(math.ceil(found.width * h / h_max / 8) * math.ceil(found.height * v / v_max / 8) for h, v in found.components)
    needed_mb = blocks * 64 * 2 / 2**20
    if needed_mb > memory_mb:
        raise Refused("memory", f"a progressive JPEG of {found.width}×{found.height} needs {needed_mb:,.0f} MB of coefficients "
                      f"to decode, limit {memory_mb} MB (DECODE_MEMORY_MB)")
    scans = data.count(b"\xff\xda")
    if scans > MAX_JPEG_SCANS:
        raise Refused("cpu", f"a progressive JPEG of {scans:,} scans, limit {MAX_JPEG_SCANS}")
