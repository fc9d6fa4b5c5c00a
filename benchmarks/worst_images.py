"""Worst-case images for the decoder: tiny files that decode to the most pixels the limits allow.

Shared by the decode-cost script and the hostile-image corpus in tests/ (which imports them).
"""
from __future__ import annotations

import io
import math
import struct

from PIL import Image

from service.images import PIXEL_WEIGHT


def encode(image: Image.Image, fmt: str, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()



def gif_canvas(width: int, height: int, count: int) -> bytes:
    """A GIF with a width × height logical screen and count 1×1 frames: a few kB that decode to a full canvas."""
    out = [b"GIF89a", struct.pack("<HHBBB", width, height, 0xF0, 0, 0), b"\0\0\0\xff\xff\xff"]
    for i in range(count):
        out.append(b"\x21\xf9\x04\x04\x01\x00\x00\x00")  # graphic control: keep the frame, 10 ms
        out.append(b"\x2c" + struct.pack("<HHHHB", i % width, i // width % height, 1, 1, 0))
        out.append(b"\x02\x02\x44\x01\x00")  # LZW, minimum code size 2: clear, pixel 0, end
    return b"".join(out) + b"\x3b"



def side_under(cap: int) -> int:
    """The side of the largest square with fewer than cap pixels (whether a cap is inclusive is the service's business)."""
    return math.isqrt(cap - 1)



def worst_images(pixels: int) -> dict[str, bytes]:
    """One file per kind, each a blank square of just under `pixels` pixels: they compress to almost nothing."""
    side = side_under(pixels)
    blank = lambda mode, side=side: Image.new(mode, (side, side), 0)  # noqa: E731
    webp_side = side_under(pixels // PIXEL_WEIGHT["WEBP"] + 1)  # a WebP pixel counts more (service/images.py)
    return {
        "png rgba transparent": encode(blank("RGBA"), "PNG"),
        "png gray": encode(blank("L"), "PNG"),
        "png 16-bit": encode(blank("I;16"), "PNG"),
        "jpeg gray": encode(blank("L"), "JPEG"),
        "gif 1x1 frame on canvas": gif_canvas(side, side, 1),
        "webp lossless": encode(blank("L", webp_side), "WEBP", lossless=True),
        "tiff deflate": encode(blank("L"), "TIFF", compression="tiff_adobe_deflate"),
    }
