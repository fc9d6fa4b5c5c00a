"""Any image Pillow decodes → the model's 28×28 light-on-dark float tensor, within a budget.

Fashion-MNIST items are light on a black background, centred, with their aspect ratio kept.
Photos of products are usually dark on white, so an image whose border is light is inverted.

What a client can make us spend is bounded before any pixel is decoded. Headers give each
image's size: one decoded image may have MAX_IMAGE_PIXELS, one request MAX_REQUEST_PIXELS, and
a worker decodes at most one image of over a megapixel at a time (a transparent 6300×6300 PNG
is 154 kB on the wire and 160 MB decoded). Images shrink as early as Pillow allows: JPEGs are
decoded at 1/2–1/8 scale straight to grayscale (`draft`), everything else is box-reduced to a
few times 28 pixels right after decoding, before any conversion or compositing copies it.
"""
from __future__ import annotations

import base64
import io
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
from PIL import Image, ImageOps

from service.errors import BadRequest, PayloadTooLarge, ServingError

SIZE = 28
# Shrink to at least this before the final Lanczos resize: Pillow's reducing_gap of 3.
WORK = SIZE * 3
# Below this an image decodes without waiting for the worker's big-image slot (≤ 4 MB decoded).
SMALL_PIXELS = 1_000_000
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
_TRANSPOSE = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
              5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
              8: Image.Transpose.ROTATE_90}


class Decoder:
    """Decodes the images of requests within per-image, per-request and per-worker pixel budgets."""

    def __init__(self, image_pixels: int, request_pixels: int):
        self.image_pixels = image_pixels
        self.request_pixels = request_pixels
        self._big = threading.Lock()  # one image over SMALL_PIXELS decoding at a time, per worker

    def decode(self, uploads: list[tuple[str | None, bytes]]) -> np.ndarray:
        """(filename, bytes) pairs → float32 [N, 28, 28, 1] in [0, 1]; 4xx errors name the image."""
        opened = [self._open(i, name, data) for i, (name, data) in enumerate(uploads)]
        total = sum(_cost(image) for image in opened)
        if total > self.request_pixels:
            raise PayloadTooLarge(f"{total:,} pixels in one request, limit {self.request_pixels:,} (MAX_REQUEST_PIXELS)")
        return np.stack([self._tensor(i, name, image) for i, ((name, _), image) in enumerate(zip(uploads, opened))])

    def _open(self, index: int, name: str | None, data: bytes) -> Image.Image:
        # Reads the header only: the size is known before any pixel is decoded.
        if not data:
            raise BadRequest(f"{_which(index, name)}: empty image")
        try:
            image = Image.open(io.BytesIO(data), formats=FORMATS)
            image.draft("L" if image.mode in ("RGB", "L") else image.mode, (WORK, WORK))  # JPEG only; others ignore it
        except Exception as exc:  # Pillow raises many types for unreadable headers
            raise BadRequest(f"{_which(index, name)}: not an image format Pillow can decode ({type(exc).__name__}); "
                             f"send {', '.join(FORMATS)}") from None
        if _cost(image) > self.image_pixels:
            weight = f" (a {image.format} pixel counts {PIXEL_WEIGHT[image.format]}×)" if image.format in PIXEL_WEIGHT else ""
            raise PayloadTooLarge(f"{_which(index, name)}: image too large: {image.width}×{image.height} pixels{weight}, "
                                  f"limit {self.image_pixels:,} (MAX_IMAGE_PIXELS)")
        return image

    def _tensor(self, index: int, name: str | None, image: Image.Image) -> np.ndarray:
        try:
            with self._slot(_cost(image)):
                image.load()  # GIF, WebP, TIFF…: the first frame or page only
                orientation = _orientation(image)  # after load: a PNG's eXIf chunk may follow its pixels
                small = _shrink(image)
            gray = _gray_on_white(small)
            return _to_tensor(gray.transpose(orientation) if orientation else gray)
        except ServingError:
            raise
        except Exception as exc:  # truncated or corrupt data: Pillow raises OSError, SyntaxError, ValueError, struct.error…
            raise BadRequest(f"{_which(index, name)}: corrupt or truncated image ({type(exc).__name__}: {str(exc)[:80]})") from None
        finally:
            image.close()  # the decoded canvas goes now, not when the whole request is done

    @contextmanager
    def _slot(self, pixels: int) -> Iterator[None]:
        if pixels <= SMALL_PIXELS:
            yield
            return
        with self._big:
            yield


def _cost(image: Image.Image) -> int:
    """What decoding the image costs against the pixel budgets: its pixels, weighted by format."""
    return image.width * image.height * PIXEL_WEIGHT.get(image.format or "", 1)


def _which(index: int, name: str | None) -> str:
    return f"image {index + 1}" + (f" ({name[:80]})" if name else "")


def _orientation(image: Image.Image) -> Image.Transpose | None:
    try:
        return _TRANSPOSE.get(image.getexif().get(0x0112))  # EXIF Orientation
    except Exception:  # a corrupt EXIF block: the pixels may still be fine
        return None


def _shrink(image: Image.Image) -> Image.Image:
    """A box-reduced copy whose longer side is at least WORK, made strip by strip.

    Pillow's reduce() first copies an RGBA or LA image whole (premultiplied), and modes it
    cannot reduce need a converted copy; strips of whole blocks reduce exactly as the whole
    image does, so no full-size copy is ever made.
    """
    factor = max(1, max(image.size) // WORK)
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
        # Pillow's own I;16 → L conversion clips at 255; scale the 16 bits down instead.
        return Image.fromarray((np.asarray(image, dtype=np.uint16) >> 8).astype(np.uint8), mode="L")
    return image


def _gray_on_white(image: Image.Image) -> Image.Image:
    """8-bit grayscale; transparent areas become white background, like a product photo."""
    if image.mode in ("I", "F"):
        values = np.nan_to_num(np.asarray(image, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        # Floats in [0, 1] are intensities; anything else is taken as 8-bit values (or clipped).
        scale = 255.0 if image.mode == "F" and values.size and values.max() <= 1.0 else 1.0
        return Image.fromarray(np.clip(values * scale, 0, 255).astype(np.uint8), mode="L")
    if "A" in image.mode or "a" in image.mode:
        rgba = image.convert("RGBA")
        gray = np.asarray(rgba.convert("L"), dtype=np.float32)
        alpha = np.asarray(rgba.getchannel("A"), dtype=np.float32) / 255.0
        return Image.fromarray(np.round(gray * alpha + 255.0 * (1 - alpha)).astype(np.uint8), mode="L")
    return image.convert("L")


def _to_tensor(gray: Image.Image) -> np.ndarray:
    """float32 [28, 28, 1] in [0, 1], light object on dark background."""
    pixels = np.asarray(gray)
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    middle = len(border) // 2  # the median (upper, for an even count), without np.median's generality
    background = int(np.partition(border, middle)[middle])
    if gray.size != (SIZE, SIZE):
        pixels = np.asarray(ImageOps.pad(gray, (SIZE, SIZE), method=Image.Resampling.LANCZOS, color=background))
    tensor = pixels.astype(np.float32) / 255.0
    if background > 127:
        tensor = 1.0 - tensor
    return tensor[..., np.newaxis]


def to_png_base64(tensor: np.ndarray) -> str:
    """The 28×28 view the model saw, as a base64 PNG (for ?explain=1 and the web page)."""
    image = Image.fromarray(np.clip(tensor[..., 0] * 255.0 + 0.5, 0, 255).astype(np.uint8), mode="L")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")
