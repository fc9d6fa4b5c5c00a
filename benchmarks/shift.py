"""A camera's shift of Fashion-MNIST images, for the closed-loop benchmark (benchmarks/loop.py).

A phone held at an angle over the article, slightly out of focus, under a lamp on one side:
- tilt: rotation by 15° to 30°, either way (people do not hold phones square);
- focus: a Gaussian blur of radius 0.8 px at 28×28;
- light: brightness falling off linearly across the image, from 100% to 40%, in a random direction.
The service's preprocessing cannot undo any of it: it fits, pads and inverts light backgrounds,
but does not deskew, sharpen or flatten the lighting, and the background stays dark (so no
inversion either). Each image gets its own draw from a seeded generator.
"""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

MIN_ANGLE, MAX_ANGLE = 15.0, 30.0
BLUR_RADIUS = 0.8
DARKEST = 0.4


def shift(images: np.ndarray, seed: int) -> np.ndarray:
    """uint8 [N, 28, 28] → the same images as the camera above would take them (uint8 [N, 28, 28])."""
    rng = np.random.default_rng(seed)
    out = np.empty_like(images)
    ys, xs = np.mgrid[0:28, 0:28] / 27.0 - 0.5
    for i, image in enumerate(images):
        angle = rng.uniform(MIN_ANGLE, MAX_ANGLE) * rng.choice((-1, 1))
        tilted = Image.fromarray(image, "L").rotate(angle, resample=Image.BILINEAR, fillcolor=0)
        blurred = np.asarray(tilted.filter(ImageFilter.GaussianBlur(BLUR_RADIUS)), np.float32)
        direction = rng.uniform(0, 2 * np.pi)
        ramp = np.cos(direction) * xs + np.sin(direction) * ys  # −0.71 … 0.71 across the image
        light = 1.0 - (1.0 - DARKEST) * (ramp - ramp.min()) / (ramp.max() - ramp.min())
        out[i] = np.clip(np.round(blurred * light), 0, 255).astype(np.uint8)
    return out
