"""A corpus of hostile images, generated with Pillow: nothing binary is committed.

Pixel bombs just under (and just over) each cap, huge transparent canvases, animations with many
frames, 16-bit and float TIFFs, CMYK, palettes with transparency, the less common formats Pillow
opens, every EXIF orientation and truncations of every format. `specs()` is cheap (names only),
so tests can parametrize over it; the bytes are built when asked for.
`python -m tests.hostile_images DIR` writes every item to DIR, for curl and other tools.
"""
from __future__ import annotations

import argparse
import functools
import math
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image

from benchmarks.worst_images import encode, gif_canvas, side_under
from service.images import PIXEL_WEIGHT

# The service's caps today (service/images.py); tests pass the running server's values.
DEFAULT_MAX_IMAGE_PIXELS = 40_000_000
OK, REJECTED, EITHER = ("2xx",), ("4xx",), ("2xx", "4xx")
EXIF_ORIENTATION = 0x0112
# Where truncations cut: inside the signature, inside the first header, then proportions of the file.
CUTS = (1, 6, 16, 33)
FRACTIONS = (0.25, 0.5, 0.9)


class Item(NamedTuple):
    name: str
    data: bytes
    expected: tuple[str, ...]  # the status classes a correct server may answer
    copies: int = 1  # files of one multipart request


@dataclass(frozen=True)
class Spec:
    """An item before its bytes are built."""

    name: str
    suffix: str
    build: Callable[[], bytes]
    expected: tuple[str, ...]
    copies: int = 1

    def item(self) -> Item:
        return Item(self.name, self.build(), self.expected, self.copies)


# -- building blocks ---------------------------------------------------------------------------


def picture(size: tuple[int, int] = (32, 24), mode: str = "RGB") -> Image.Image:
    """A small deterministic picture (gradient, a light block, half-transparent where there is alpha)."""
    w, h = size
    gray = np.tile(np.linspace(0, 200, w, dtype=np.uint8), (h, 1))
    gray[h // 4: 3 * h // 4, w // 4: 3 * w // 4] = 250
    image = Image.fromarray(gray)
    if mode in ("RGBA", "LA"):
        rgba = image.convert(mode)
        rgba.putalpha(Image.fromarray(np.where(gray > 100, 255, 0).astype(np.uint8)))
        return rgba
    if mode == "RGB":
        return Image.merge("RGB", (image, image.transpose(Image.Transpose.FLIP_LEFT_RIGHT), image))
    return image.convert(mode)


def frames(count: int, size: tuple[int, int] = (32, 32), mode: str = "RGB") -> list[Image.Image]:
    """count frames that all differ (identical frames would be merged by the encoders)."""
    base = np.asarray(picture(size, "L"))
    out = []
    for i in range(count):
        pixels = base.copy()
        pixels[i % size[1], (i // size[1]) % size[0]] ^= 0xFF
        out.append(Image.fromarray(pixels).convert(mode))
    return out


def animated(fmt: str, count: int, **params) -> bytes:
    first, *rest = frames(count, mode="P" if fmt == "GIF" else "RGB")
    return encode(first, fmt, save_all=True, append_images=rest, duration=10, loop=0, **params)


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_declaring(width: int, height: int) -> bytes:
    """A PNG whose header claims width × height pixels, with one row of data: a lie about size."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(b"\0" * 64)) + _chunk(b"IEND", b"")


def with_exif(fmt: str, orientation: int | None = None, raw: bytes | None = None) -> bytes:
    """A 40 × 20 picture (orientation matters when it is not square) with an EXIF orientation or raw EXIF."""
    image = picture((40, 20), "RGB")
    exif = raw
    if raw is None:
        tags = Image.Exif()
        tags[EXIF_ORIENTATION] = orientation
        exif = tags.tobytes()
    return encode(image, fmt, exif=exif)


def float_tiff(values: list[float]) -> bytes:
    pixels = np.resize(np.asarray(values, dtype=np.float32), (24, 32))
    return encode(Image.fromarray(pixels), "TIFF")


def palette_transparent(fmt: str, per_entry: bool) -> bytes:
    image = picture((32, 24), "P") if fmt == "PNG" else picture((32, 24), "L").convert("P")
    if per_entry:  # a tRNS entry per palette colour (PNG only)
        return encode(image, fmt, transparency=bytes(range(0, 256)))
    return encode(image, fmt, transparency=0)


def short_palette() -> bytes:
    """A palette of two colours, with pixels that index far past it."""
    image = Image.new("P", (32, 24), 200)
    image.putpalette([0, 0, 0, 255, 255, 255])
    return encode(image, "PNG")


def samples() -> dict[str, bytes]:
    """One small valid file per format and notable variant: the seeds for truncations and bit flips."""
    rgb, gray, rgba = picture(), picture(mode="L"), picture(mode="RGBA")
    return {
        "png": encode(rgb, "PNG"),
        "png-rgba": encode(rgba, "PNG"),
        "png-16bit": encode(Image.fromarray(np.asarray(gray, dtype=np.uint16) * 257), "PNG"),
        "png-palette-transparent": palette_transparent("PNG", per_entry=True),
        "apng": animated("PNG", 4),
        "jpeg": encode(rgb, "JPEG", quality=90),
        "jpeg-progressive": encode(gray, "JPEG", progressive=True),
        "jpeg-cmyk": encode(rgb.convert("CMYK"), "JPEG"),
        "webp": encode(rgb, "WEBP", quality=80),
        "webp-lossless-rgba": encode(rgba, "WEBP", lossless=True),
        "webp-animated": animated("WEBP", 4),
        "gif": encode(rgb.convert("P"), "GIF"),
        "gif-animated": animated("GIF", 4),
        "tiff": encode(rgb, "TIFF"),
        "tiff-deflate": encode(rgb, "TIFF", compression="tiff_adobe_deflate"),
        "tiff-jpeg": encode(rgb, "TIFF", compression="jpeg"),
        "tiff-float": float_tiff([0.0, 0.5, 1.0]),
        "bmp": encode(rgb, "BMP"),
        "bmp-palette": encode(gray.convert("P"), "BMP"),
    }


_samples = functools.cache(samples)


# -- the corpus ------------------------------------------------------------------------------


def _bombs(cap: int) -> Iterator[Spec]:
    """Images of just under cap pixels that compress to almost nothing, and just over it."""
    side, over = side_under(cap), math.isqrt(cap) + 1
    blank = lambda mode, size=(side, side): Image.new(mode, size, 0)  # noqa: E731
    yield Spec(f"bomb-png-gray-{side}x{side}", "png", lambda: encode(blank("L"), "PNG"), OK)
    # Fully transparent RGBA: the alpha composite on a white background costs several full copies.
    yield Spec(f"bomb-png-rgba-transparent-{side}x{side}", "png", lambda: encode(blank("RGBA"), "PNG"), OK)
    yield Spec(f"bomb-png-16bit-{side}x{side}", "png", lambda: encode(blank("I;16"), "PNG"), OK)
    yield Spec(f"bomb-jpeg-{side}x{side}", "jpg", lambda: encode(blank("L"), "JPEG"), OK)
    yield Spec(f"bomb-gif-{side}x{side}", "gif", lambda: encode(blank("L"), "GIF"), OK)
    # Each WebP pixel counts PIXEL_WEIGHT["WEBP"] times (libwebp keeps several full canvases).
    webp = side_under(cap // PIXEL_WEIGHT["WEBP"] + 1)
    yield Spec(f"bomb-webp-lossless-{webp}x{webp}", "webp", lambda: encode(blank("L", (webp, webp)), "WEBP", lossless=True), OK)
    yield Spec(f"over-webp-lossless-{side}x{side}", "webp", lambda: encode(blank("L"), "WEBP", lossless=True), REJECTED)
    yield Spec(f"bomb-tiff-deflate-{side}x{side}", "tif", lambda: encode(blank("L"), "TIFF", compression="tiff_adobe_deflate"), OK)
    yield Spec(f"bomb-gif-canvas-{side}x{side}-1000-frames", "gif", lambda: gif_canvas(side, side, 1000), OK)
    # One row or one column: as many pixels, and an aspect ratio no resize expects.
    yield Spec(f"bomb-png-row-{cap - 1}x1", "png", lambda: encode(blank("L", (cap - 1, 1)), "PNG"), EITHER)
    yield Spec(f"bomb-png-column-1x{cap - 1}", "png", lambda: encode(blank("L", (1, cap - 1)), "PNG"), EITHER)
    yield Spec(f"over-png-{over}x{over}", "png", lambda: encode(blank("L", (over, over)), "PNG"), REJECTED)
    yield Spec(f"over-png-declared-{side * 2}x{side * 2}", "png", lambda: png_declaring(side * 2, side * 2), REJECTED)
    yield Spec("over-png-declared-1000000x1000000", "png", lambda: png_declaring(1_000_000, 1_000_000), REJECTED)


def _request_bombs(image_cap: int, request_cap: int) -> Iterator[Spec]:
    """Several images in one request whose pixels add up to just under, then just over, the request cap."""
    copies = max(2, math.ceil(request_cap / image_cap))
    side = side_under(min(image_cap, request_cap // copies))
    png = lambda: encode(Image.new("L", (side, side), 0), "PNG")  # noqa: E731
    yield Spec(f"request-bomb-{copies}x-png-{side}x{side}", "png", png, OK, copies)
    yield Spec(f"request-over-{copies + 1}x-png-{side}x{side}", "png", png, REJECTED, copies + 1)


def _animations() -> Iterator[Spec]:
    yield Spec("animated-gif-1000-frames", "gif", lambda: animated("GIF", 1000), OK)
    yield Spec("animated-webp-300-frames", "webp", lambda: animated("WEBP", 300), OK)
    yield Spec("animated-apng-300-frames", "png", lambda: animated("PNG", 300), OK)
    yield Spec("tiff-500-pages", "tif", lambda: animated("TIFF", 500), OK)


def _modes() -> Iterator[Spec]:
    gray16 = np.asarray(picture(mode="L"), dtype=np.uint16) * 257
    yield Spec("tiff-16bit", "tif", lambda: encode(Image.fromarray(gray16), "TIFF"), OK)
    yield Spec("tiff-32bit-int", "tif", lambda: encode(Image.fromarray(gray16.astype(np.int32) - 40_000), "TIFF"), OK)
    yield Spec("tiff-float", "tif", lambda: float_tiff([0.0, 0.25, 1.0]), OK)
    yield Spec("tiff-float-huge", "tif", lambda: float_tiff([-3e38, 3e38, 1e-45]), EITHER)
    yield Spec("tiff-float-nan-inf", "tif", lambda: float_tiff([float("nan"), float("inf"), float("-inf"), 0.5]), EITHER)
    yield Spec("png-16bit", "png", lambda: encode(Image.fromarray(gray16), "PNG"), OK)
    yield Spec("png-1bit", "png", lambda: encode(picture(mode="1"), "PNG"), OK)
    yield Spec("png-gray-alpha", "png", lambda: encode(picture(mode="LA"), "PNG"), OK)
    yield Spec("png-rgba-fully-transparent", "png", lambda: encode(Image.new("RGBA", (32, 24)), "PNG"), OK)
    yield Spec("jpeg-cmyk", "jpg", lambda: encode(picture().convert("CMYK"), "JPEG"), OK)
    yield Spec("tiff-cmyk", "tif", lambda: encode(picture().convert("CMYK"), "TIFF"), OK)
    yield Spec("tiff-ycbcr-jpeg", "tif", lambda: encode(picture(), "TIFF", compression="jpeg"), OK)
    yield Spec("png-palette-transparent-index", "png", lambda: palette_transparent("PNG", per_entry=False), OK)
    yield Spec("png-palette-transparent-per-entry", "png", lambda: palette_transparent("PNG", per_entry=True), OK)
    yield Spec("gif-palette-transparent", "gif", lambda: palette_transparent("GIF", per_entry=False), OK)
    yield Spec("png-palette-short", "png", short_palette, EITHER)
    yield Spec("png-1x1", "png", lambda: encode(Image.new("L", (1, 1), 255), "PNG"), OK)


# Formats Pillow also opens, each with a parser of its own: (format, suffix, mode, save options).
OTHER_FORMATS = [
    ("ICO", "ico", "RGBA", {"sizes": [(16, 16), (32, 32), (256, 256)]}), ("JPEG2000", "jp2", "RGB", {}), ("AVIF", "avif", "RGB", {}),
    ("TGA", "tga", "RGB", {}), ("PCX", "pcx", "RGB", {}), ("PPM", "ppm", "L", {}), ("SGI", "sgi", "RGB", {}), ("QOI", "qoi", "RGB", {}),
    ("DDS", "dds", "RGBA", {}), ("SPIDER", "spi", "F", {}),
    ("EPS", "eps", "L", {}),  # PostScript: Pillow hands it to Ghostscript, when one is installed
]


def _other_formats() -> Iterator[Spec]:
    """The service may classify or refuse these; it may not crash on them."""
    for fmt, suffix, mode, params in OTHER_FORMATS:
        yield Spec(f"format-{fmt.lower()}", suffix, lambda f=fmt, m=mode, p=params: encode(picture().convert(m), f, **p), EITHER)


def _exif() -> Iterator[Spec]:
    for orientation in range(1, 9):
        yield Spec(f"jpeg-exif-orientation-{orientation}", "jpg", lambda o=orientation: with_exif("JPEG", o), OK)
        yield Spec(f"webp-exif-orientation-{orientation}", "webp", lambda o=orientation: with_exif("WEBP", o), OK)
    yield Spec("png-exif-orientation-6", "png", lambda: with_exif("PNG", 6), OK)
    for orientation in (0, 9, 65535):
        yield Spec(f"jpeg-exif-orientation-invalid-{orientation}", "jpg", lambda o=orientation: with_exif("JPEG", o), EITHER)
    # An IFD that claims 65,535 entries and holds none.
    yield Spec("jpeg-exif-corrupt", "jpg", lambda: with_exif("JPEG", raw=b"Exif\0\0II*\0\x08\0\0\0\xff\xff"), EITHER)


def _truncations() -> Iterator[Spec]:
    def cut(name: str, at: int | float) -> bytes:
        data = _samples()[name]
        return data[: at if isinstance(at, int) else int(len(data) * at)]

    for name in ("png", "apng", "jpeg", "jpeg-progressive", "webp", "webp-animated", "gif", "gif-animated", "tiff", "tiff-deflate", "bmp"):
        suffix = name.split("-")[0].replace("jpeg", "jpg").replace("tiff", "tif").replace("apng", "png")
        for at in CUTS:
            yield Spec(f"truncated-{name}-{at}-bytes", suffix, lambda n=name, a=at: cut(n, a), REJECTED)
        for at in FRACTIONS:
            yield Spec(f"truncated-{name}-{int(at * 100)}-percent", suffix, lambda n=name, a=at: cut(n, a), EITHER)


# -- decoder bombs: costly to decode however few pixels they declare ----------------------------
# Issue 20: none of them is over a pixel cap, each made a worker spend seconds or hundreds of MB.
# Built by hand (struct), so that an 8 MB file takes milliseconds to make.
BOMB_BYTES = 8 * 1024 * 1024 - 64 * 1024  # under MAX_REQUEST_BYTES with room for the multipart framing


def _jpeg_segment(marker: int, body: bytes) -> bytes:
    return struct.pack(">BBH", 0xFF, marker, len(body) + 2) + body


def _progressive_head(width: int, height: int) -> bytes:
    """SOI, a flat quantisation table, a one-component progressive frame, one-code Huffman tables."""
    dqt = _jpeg_segment(0xDB, b"\0" + b"\1" * 64)
    sof2 = _jpeg_segment(0xC2, struct.pack(">BHHB", 8, height, width, 1) + b"\x01\x11\x00")
    # DC table 0: one 1-bit code ("0") for category 0. AC table 0: 4-bit codes for the 15 EOB-run symbols 0x00…0xE0.
    dc = _jpeg_segment(0xC4, b"\x00" + bytes([1] + [0] * 15) + b"\x00")
    ac = _jpeg_segment(0xC4, b"\x10" + bytes([0, 0, 0, 15] + [0] * 12) + bytes(r << 4 for r in range(15)))
    return b"\xff\xd8" + dqt + sof2 + dc + ac


def _sos(first: int, last: int) -> bytes:
    return _jpeg_segment(0xDA, bytes([1, 1, 0x00, first, last, 0]))


def _eob_runs(blocks: int) -> bytes:
    """AC entropy data saying 'every band of these blocks is zero': EOB runs of up to 32,767 blocks."""
    bits = []
    while blocks:
        r = min(14, blocks.bit_length() - 1)
        run = min(blocks, (1 << (r + 1)) - 1)
        bits.append(format(r, "04b") + (format(run - (1 << r), f"0{r}b") if r else ""))
        blocks -= run
    stream = "".join(bits)
    stream += "1" * (-len(stream) % 8)
    return int(stream, 2).to_bytes(len(stream) // 8, "big").replace(b"\xff", b"\xff\x00")


def progressive_jpeg_memory(side: int = 31_992) -> bytes:
    """A blank progressive JPEG whose 1/8 draft is under the pixel cap; libjpeg keeps every coefficient (2 B/pixel)."""
    blocks = math.ceil(side / 8) ** 2
    dc = b"\0" * math.ceil(blocks / 8)  # one "0" bit per block: DC difference 0; zeros hold no 0xFF to stuff
    return _progressive_head(side, side) + _sos(0, 0) + dc + b"\xff\xd9"


def progressive_jpeg_scans(side: int = 4000, size: int = BOMB_BYTES) -> bytes:
    """A blank progressive JPEG whose one AC scan is repeated until the file is `size` bytes: each scan walks every block."""
    blocks = math.ceil(side / 8) ** 2
    head = _progressive_head(side, side) + _sos(0, 0) + b"\0" * math.ceil(blocks / 8)
    scan = _sos(1, 63) + _eob_runs(blocks)
    return head + scan * ((size - len(head) - 2) // len(scan)) + b"\xff\xd9"


def gif_comments(size: int = BOMB_BYTES) -> bytes:
    """A 28×28 GIF preceded by one comment of one-byte sub-blocks, `size` bytes in all."""
    image = encode(picture((28, 28), "L").convert("P"), "GIF")
    flags = image[10]
    table = 3 * 2 ** ((flags & 7) + 1) if flags & 0x80 else 0
    head, rest = image[:13 + table], image[13 + table:]  # header, logical screen, global colour table
    count = (size - len(image) - 3) // 2
    return head + b"\x21\xfe" + b"\x01C" * count + b"\x00" + rest


def png_chunks(size: int = BOMB_BYTES) -> bytes:
    """A 28×28 PNG with empty private ancillary chunks before its pixels, `size` bytes in all."""
    image = encode(picture((28, 28), "L"), "PNG")
    empty = _chunk(b"prVt", b"")
    return image[:33] + empty * ((size - len(image)) // len(empty)) + image[33:]


def tiff_strips(height: int = 1_000_000) -> bytes:
    """A 1×height uncompressed TIFF, one row per strip, every strip at the same offset: Pillow makes a tile per strip."""
    entries = [(256, 4, 1, 1), (257, 4, 1, height), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 1),
               (273, 4, height, 0), (277, 3, 1, 1), (278, 4, 1, 1), (279, 4, height, 0)]
    ifd_size = 2 + 12 * len(entries) + 4
    offsets_at = 8 + ifd_size
    counts_at = offsets_at + 4 * height
    pixel_at = counts_at + 4 * height
    ifd = [struct.pack("<H", len(entries))]
    for tag, kind, count, value in entries:
        value = {273: offsets_at, 279: counts_at}.get(tag, value)
        packed = struct.pack("<I", value) if kind == 4 or tag in (273, 279) else struct.pack("<HH", value, 0)
        ifd.append(struct.pack("<HHI", tag, kind, count) + packed)
    ifd.append(b"\0\0\0\0")
    return (b"II*\0" + struct.pack("<I", 8) + b"".join(ifd) + struct.pack("<I", pixel_at) * height
            + struct.pack("<I", 1) * height + b"\x80")


def decoder_bombs() -> list[Spec]:
    """Issue 20's bombs, and one of another format: under every pixel cap, each must get a 4xx, never a dead worker."""
    return [
        Spec("progressive-jpeg-31992x31992-memory", "jpg", progressive_jpeg_memory, REJECTED),
        Spec("progressive-jpeg-4000x4000-repeated-scans", "jpg", progressive_jpeg_scans, REJECTED),
        Spec("gif-28x28-comment-of-one-byte-blocks", "gif", gif_comments, REJECTED),
        Spec("png-28x28-ancillary-chunk-flood", "png", png_chunks, REJECTED),
        Spec("tiff-1x1000000-one-strip-per-row", "tif", tiff_strips, REJECTED),
    ]


def specs(max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS, max_request_pixels: int | None = None) -> list[Spec]:
    """Every item of the corpus, unbuilt, for a server with these caps (None: no request cap)."""
    # One image must fit both caps: with a request cap below the image cap, the request cap is the image's.
    per_image = min(max_image_pixels, max_request_pixels or max_image_pixels)
    out = [*_bombs(per_image), *_animations(), *_modes(), *_other_formats(), *_exif(), *_truncations()]
    if max_request_pixels is not None:
        out += _request_bombs(max_image_pixels, max_request_pixels)
    return out


def corpus(max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS, max_request_pixels: int | None = None) -> Iterator[Item]:
    """(name, bytes, expected status classes, copies) for every item, built one at a time."""
    for spec in specs(max_image_pixels, max_request_pixels):
        yield spec.item()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.hostile_images", description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--max-image-pixels", type=int, default=DEFAULT_MAX_IMAGE_PIXELS)
    parser.add_argument("--max-request-pixels", type=int, default=None)
    args = parser.parse_args(argv)
    args.folder.mkdir(parents=True, exist_ok=True)
    for spec in specs(args.max_image_pixels, args.max_request_pixels):
        data = spec.build()
        (args.folder / f"{spec.name}.{spec.suffix}").write_bytes(data)
        copies = f" ×{spec.copies}" if spec.copies > 1 else ""
        print(f"{len(data):>10,}  {spec.name}.{spec.suffix}{copies}  expect {' or '.join(spec.expected)}")


if __name__ == "__main__":
    main()
