"""Any image Pillow decodes → the model's light-on-dark float tensor (its input's height × width), within a budget.

Fashion-MNIST items are light on a black background, centred, with their aspect ratio kept.
Photos of products are usually dark on white, so an image whose border is light is inverted.

What a client can make us spend is bounded by limits the kernel enforces, not by knowing each
format's tricks (issue 20): a file decodes in one of the worker's decoder processes
(service/decode/sandbox.py), whose address space and CPU time are capped, unless its header
proves it cheap (service/decode/admit.py: small PNG, GIF, BMP, baseline JPEG, whose cost the
admission itself bounds). One request's images may use DECODE_CPU_SECONDS in decoders, all
together; their pixels are capped as before (one image MAX_IMAGE_PIXELS, a request
MAX_REQUEST_PIXELS), and images shrink as early as Pillow allows (service/decode/pixels.py).
Here, the small image becomes the tensor.
"""
from __future__ import annotations

import base64
import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

from service.decode import admit, pixels
from service.decode.pixels import FORMATS, PIXEL_WEIGHT  # noqa: F401 (the decoders' constants, imported from here)
from service.decode.sandbox import Busy, Overrun, Sandbox
from service.errors import BadRequest, NotReady, PayloadTooLarge
from service.metrics import DECODE_REFUSALS

_TRANSPOSE = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
              5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
              8: Image.Transpose.ROTATE_90}


class DecodersBusy(NotReady):
    """Every decoder process of this worker stayed busy past DECODE_WAIT_SECONDS: retry shortly."""

    retry_after = 1


@dataclass
class _Budget:
    """What the rest of one request may still spend on decoding."""

    cpu_seconds: float
    pixels: int
    size: tuple[int, int]  # the model's input, height × width
    fast_bytes: int = admit.FAST_REQUEST_BYTES


class Decoder:
    """Decodes the images of requests within per-image and per-request budgets, costly ones in a sandbox."""

    def __init__(self, image_pixels: int, request_pixels: int, sandbox: Sandbox | None = None, cpu_seconds: float = 1.5):
        # Without a sandbox (tests of the decoding alone), every image decodes in this process.
        self.image_pixels = image_pixels
        self.request_pixels = request_pixels
        self.sandbox = sandbox
        self.cpu_seconds = cpu_seconds

    def decode(self, uploads: list[tuple[str | None, bytes]], size: tuple[int, int]) -> np.ndarray:
        """(filename, bytes) pairs → float32 [N, height, width, 1] in [0, 1]; 4xx errors name the image."""
        budget = _Budget(self.cpu_seconds, self.request_pixels, size)
        return np.stack([self._tensor(i, name, data, budget) for i, (name, data) in enumerate(uploads)])

    def _tensor(self, index: int, name: str | None, data: bytes, budget: _Budget) -> np.ndarray:
        which = _which(index, name)
        if not data:
            raise BadRequest(f"{which}: empty image")
        if budget.cpu_seconds <= 0:
            DECODE_REFUSALS.labels("cpu").inc()
            raise PayloadTooLarge(f"{which}: the images before it used up the request's decoding CPU "
                                  f"(limit {self.cpu_seconds:g} s, DECODE_CPU_SECONDS)")
        try:
            small, orientation, cost = self._small(data, budget)
        except pixels.DecodeError as exc:
            if isinstance(exc, pixels.OutOfMemory):
                DECODE_REFUSALS.labels("memory").inc()
            raise _client_error(which, exc, self, budget) from None
        except Overrun as exc:
            DECODE_REFUSALS.labels(exc.limit).inc()
            raise _overrun(which, exc, self) from None
        except admit.Refused as exc:
            DECODE_REFUSALS.labels(exc.limit).inc()
            raise PayloadTooLarge(f"{which}: {exc}") from None
        except Busy as exc:
            raise DecodersBusy(f"{which}: no decoder free: {exc} (DECODE_PROCESSES, DECODE_WAIT_SECONDS); retry") from None
        budget.pixels -= cost
        try:
            gray = _gray_on_white(small)
            transpose = _TRANSPOSE.get(orientation or 0)
            return _to_tensor(gray.transpose(transpose) if transpose else gray, budget.size)
        except Exception as exc:  # a mode Pillow decoded but cannot convert
            raise BadRequest(f"{which}: corrupt or truncated image ({type(exc).__name__}: {str(exc)[:80]})") from None

    def _small(self, data: bytes, budget: _Budget) -> tuple[Image.Image, int | None, int]:
        found = admit.header(data)
        if self.sandbox is None or admit.in_process(data, found, budget.fast_bytes):
            # Not charged to the CPU budget: admission bounds it (a request's worst, 0.08 s, in
            # service/decode/admit.py), and reading a thread's CPU clock cost 5-40% of a small decode.
            budget.fast_bytes -= len(data)
            return pixels.decode(data, self.image_pixels, budget.pixels, max(budget.size))
        admit.refuse_costly(data, found, self.sandbox.limits.memory_mb)
        reply = None
        try:
            reply = self.sandbox.decode(data, budget.cpu_seconds, self.image_pixels, budget.pixels, max(budget.size))
        finally:  # killed: it may have used the whole budget
            budget.cpu_seconds -= reply.cpu_seconds if reply else budget.cpu_seconds
        return reply.result()


def _client_error(which: str, exc: pixels.DecodeError, decoder: Decoder, budget: _Budget) -> Exception:
    """The 4xx for a decoding failure, saying what was expected and what came."""
    if isinstance(exc, pixels.Unreadable):
        return BadRequest(f"{which}: not an image format Pillow can decode ({exc}); send {', '.join(FORMATS)}")
    if isinstance(exc, pixels.TooManyPixels):
        return PayloadTooLarge(f"{which}: image too large: {exc}, limit {decoder.image_pixels:,} (MAX_IMAGE_PIXELS)")
    if isinstance(exc, pixels.OverRequest):
        total = decoder.request_pixels - budget.pixels + int(str(exc))
        return PayloadTooLarge(f"{total:,} pixels in one request (by {which}), limit {decoder.request_pixels:,} (MAX_REQUEST_PIXELS)")
    if isinstance(exc, pixels.OutOfMemory):
        limit = f"{decoder.sandbox.limits.memory_mb} MB, DECODE_MEMORY_MB" if decoder.sandbox else "the memory available"
        return PayloadTooLarge(f"{which}: decoding needs more memory than a decoder may use (limit {limit}); it failed {exc}")
    return BadRequest(f"{which}: corrupt or truncated image ({exc})")


def _overrun(which: str, exc: Overrun, decoder: Decoder) -> Exception:
    if exc.limit == "cpu":
        return PayloadTooLarge(f"{which}: decoding used more CPU than the request may (limit {decoder.cpu_seconds:g} s, "
                               f"DECODE_CPU_SECONDS); the decoder was {exc}")
    if exc.limit == "memory":
        return PayloadTooLarge(f"{which}: decoding needs more memory than a decoder may use "
                               f"(limit {decoder.sandbox.limits.memory_mb} MB, DECODE_MEMORY_MB); it ran {exc}")
    if exc.limit == "time":
        return PayloadTooLarge(f"{which}: decoding took longer than an image may (limit {decoder.sandbox.limits.timeout:g} s, "
                               f"DECODE_TIMEOUT)")
    return BadRequest(f"{which}: corrupt image: {exc}")


def _which(index: int, name: str | None) -> str:
    return f"image {index + 1}" + (f" ({name[:80]})" if name else "")


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


def _to_tensor(gray: Image.Image, size: tuple[int, int]) -> np.ndarray:
    """float32 [height, width, 1] in [0, 1], light object on dark background."""
    grid = np.asarray(gray)
    border = np.concatenate([grid[0], grid[-1], grid[:, 0], grid[:, -1]])
    middle = len(border) // 2  # the median (upper, for an even count), without np.median's generality
    background = int(np.partition(border, middle)[middle])
    height, width = size
    if gray.size != (width, height):
        grid = np.asarray(ImageOps.pad(gray, (width, height), method=Image.Resampling.LANCZOS, color=background))
    tensor = grid.astype(np.float32) / 255.0
    if background > 127:
        tensor = 1.0 - tensor
    return tensor[..., np.newaxis]


def to_png_base64(tensor: np.ndarray) -> str:
    """The view the model saw (28×28 for Fashion-MNIST), as a base64 PNG (for ?explain=1 and the web page)."""
    image = Image.fromarray(np.clip(tensor[..., 0] * 255.0 + 0.5, 0, 255).astype(np.uint8), mode="L")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")
