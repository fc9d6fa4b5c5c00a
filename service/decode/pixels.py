"""Bytes → a box-reduced Pillow image a few times the model's side, and its EXIF orientation: Pillow alone.

Imported by the worker (for the in-process fast path) and by the decoder processes, which must
start fast and small: no numpy, no Flask (Pillow alone starts in 0.07 s of CPU and 13 MB; with
numpy and Flask, 0.36 s and 47 MB, on the 2-core AMD EPYC).
"""
from __future__ import annotations

import io
import struct

from PIL import Image

# Shrink to at least this many times the model's input side before the final Lanczos resize:
# Pillow's reducing_gap of 3.
REDUCING_GAP = 3
# Pixels per strip when reducing: Pillow's reduce() copies RGBA/LA whole (premultiplied) first.
STRIP_PIXELS = 1_000_000
# The formats we document; anything else (EPS, which Pillow hands to Ghostscript, PSD, PDF…) is
# refused. JPEG includes the multi-picture JPEGs of phones (Pillow's MPO), opened as JPEG.
FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF")
# Pillow decodes every WebP through libwebp's animation decoder, which keeps several full
# canvases: about four times an RGBA image's memory. Its pixels count that much more.
PIXEL_WEIGHT = {"WEBP": 4}
# Our own limits replace Pillow's bomb check: they see the size after JPEG draft scaling.
Image.MAX_IMAGE_PIXELS = None


class DecodeError(Exception):
    """The image cannot be decoded within what was asked; the message says what came."""


class Unreadable(DecodeError):
    """No header of a documented format."""


class Corrupt(DecodeError):
    """A header, then pixels that do not decode."""


class TooManyPixels(DecodeError):
    """The image alone is over the per-image pixel cap."""


class OverRequest(DecodeError):
    """The image would take the request over its pixel cap; the message is the request's pixel count."""


class OutOfMemory(DecodeError):
    """An allocation failed: in a decoder process, its address-space limit was reached."""


def decode(data: bytes, image_cap: int, pixels_left: int, side: int) -> tuple[Image.Image, int | None, int]:
    """(small image, EXIF orientation or None, the pixels it counted) of one file, for a model input
    whose longer side is `side` pixels; raises a DecodeError."""
    reduce_to = REDUCING_GAP * side
    if (size := webp_size(data)) and size[0] * size[1] * PIXEL_WEIGHT["WEBP"] > image_cap:
        # Before Image.open: opening a WebP already starts libwebp's decoder, whose allocations
        # fail under a decoder process's memory limit as "could not create decoder object" (a
        # 4000×4000 WebP got 400 "not an image format" where 3000×3000 got this 413).
        raise TooManyPixels(f"{size[0]}×{size[1]} pixels (a WEBP pixel counts {PIXEL_WEIGHT['WEBP']}×)")
    try:
        image = Image.open(io.BytesIO(data), formats=FORMATS)
        image.draft("L" if image.mode in ("RGB", "L") else image.mode, (reduce_to, reduce_to))  # JPEG only; others ignore it
    except MemoryError:
        raise OutOfMemory("reading the header") from None
    except Exception as exc:  # Pillow raises many types for unreadable headers
        raise Unreadable(type(exc).__name__) from None
    small = None
    cost = image.width * image.height * PIXEL_WEIGHT.get(image.format or "", 1)
    if cost > image_cap:
        weight = f" (a {image.format} pixel counts {PIXEL_WEIGHT[image.format]}×)" if image.format in PIXEL_WEIGHT else ""
        raise TooManyPixels(f"{image.width}×{image.height} pixels{weight}")
    if cost > pixels_left:
        raise OverRequest(str(cost))
    try:
        image.load()  # GIF, WebP, TIFF…: the first frame or page only
        small = _shrink(image, reduce_to)
        return small, _orientation(image), cost  # orientation after load: a PNG's eXIf chunk may follow its pixels
    except MemoryError:
        raise OutOfMemory(f"decoding a {image.width}×{image.height} {image.format}") from None
    except Exception as exc:  # truncated or corrupt data: OSError, SyntaxError, ValueError, struct.error…
        if "memory" in str(exc).lower():  # Pillow's "out of memory error" (-9) of its C decoders
            raise OutOfMemory(f"decoding a {image.width}×{image.height} {image.format}") from None
        raise Corrupt(f"{type(exc).__name__}: {str(exc)[:80]}") from None
    finally:
        if small is not image:  # the full-size canvas goes now, not when the caller is done
            image.close()


def webp_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) of a WebP's canvas from its first 30 bytes (RIFF, then VP8X, VP8L or VP8), or None."""
    if len(data) < 30 or data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        return None
    chunk = data[12:16]
    if chunk == b"VP8X":  # extended: 24-bit canvas width and height, minus one
        return 1 + int.from_bytes(data[24:27], "little"), 1 + int.from_bytes(data[27:30], "little")
    if chunk == b"VP8L" and data[20] == 0x2F:  # lossless: 14-bit width and height, minus one, packed
        bits = struct.unpack("<I", data[21:25])[0]
        return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
    if chunk == b"VP8 " and data[23:26] == b"\x9d\x01\x2a":  # lossy: after the frame tag's start code
        width, height = struct.unpack("<HH", data[26:30])
        return width & 0x3FFF, height & 0x3FFF
    return None


def _orientation(image: Image.Image) -> int | None:
    try:
        value = image.getexif().get(0x0112)  # EXIF Orientation
    except Exception:  # a corrupt EXIF block: the pixels may still be fine
        return None
    return value if isinstance(value, int) else None


def _shrink(image: Image.Image, reduce_to: int) -> Image.Image:
    """A box-reduced copy whose longer side is at least reduce_to, made strip by strip.

    Pillow's reduce() first copies an RGBA or LA image whole (premultiplied), and modes it
    cannot reduce need a converted copy; strips of whole blocks reduce exactly as the whole
    image does, so no full-size copy is ever made.
    """
    factor = max(1, max(image.size) // reduce_to)
    if factor == 1:  # already small (most requests): only the mode may need changing
        return _reducible(image)
    rows = factor * max(1, STRIP_PIXELS // (image.width * factor))
    strips = []
    for top in range(0, image.height, rows):
        strip = _reducible(image.crop((0, top, image.width, min(image.height, top + rows))))
        strips.append(strip.reduce(factor))
    small = Image.new(strips[0].mode, (strips[0].width, sum(s.height for s in strips)))
    for i, strip in enumerate(strips):
        small.paste(strip, (0, i * (rows // factor)))
    return small


def _reducible(image: Image.Image) -> Image.Image:
    """The image in a mode Pillow's reduce() supports."""
    if image.mode == "1":
        return image.convert("L")
    if image.mode == "P":
        return image.convert("LA" if "transparency" in image.info else "L")
    if image.mode.startswith("I;16"):
        # Pillow's own I;16 → L conversion clips at 255; keep the high byte instead (exactly v >> 8).
        return image.convert("I").point(lambda v: v * (1 / 256)).convert("L")
    return image
