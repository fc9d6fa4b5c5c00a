"""Any image Pillow decodes → the model's 28×28 light-on-dark float tensor.

Fashion-MNIST items are light on a black background, centred, with their aspect ratio kept.
Photos of products are usually dark on white, so an image whose border is light is inverted.
"""
from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from service.errors import BadRequest, PayloadTooLarge

SIZE = 28
# Larger than any sensible photo, small enough that decoding cannot exhaust a worker's memory.
MAX_PIXELS = 40_000_000
Image.MAX_IMAGE_PIXELS = MAX_PIXELS


def _open(data: bytes) -> Image.Image:
    if not data:
        raise BadRequest("empty image")
    try:
        image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise BadRequest("not an image format Pillow can decode") from None
    except Image.DecompressionBombError as exc:
        raise PayloadTooLarge(f"image too large: {exc}") from None
    if image.width * image.height > MAX_PIXELS:
        raise PayloadTooLarge(f"image too large: {image.width}×{image.height} pixels, limit {MAX_PIXELS:,}")
    try:
        image.load()  # GIF, WebP…: the first frame
    except (OSError, SyntaxError, ValueError) as exc:
        raise BadRequest(f"corrupt or truncated image: {exc}") from None
    return image


def _grayscale(image: Image.Image) -> Image.Image:
    image = ImageOps.exif_transpose(image)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        # Transparent areas are background: put them on white, like a product photo.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return image.convert("L")


def preprocess(data: bytes) -> np.ndarray:
    """Encoded image bytes → float32 [28, 28, 1] in [0, 1], light object on dark background."""
    gray = _grayscale(_open(data))
    pixels = np.asarray(gray)
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    background = int(np.median(border))
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
