"""A served version, as the routes see it: what it takes, what it answers, and a way to run it.

Routes never touch the onnxruntime session or the batcher directly: they ask for the input
spec and labels, wrap their decoding in `expecting()` (so the batcher knows a request is on
its way), and call `infer`.
"""
from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass

import numpy as np

from modelrepo import Metadata, TensorSpec
from service.batcher import Batcher
from service.errors import BadRequest
from service.runtime import ModelRuntime


class NonFiniteOutput(RuntimeError):
    """The model answered NaN or Inf for inputs it accepted: our bug (or the model's), never a 200."""


@dataclass(frozen=True)
class Served:
    runtime: ModelRuntime
    batcher: Batcher
    files: tuple = ()  # what the version's files looked like when it was loaded

    @property
    def name(self) -> str:
        return self.runtime.name

    @property
    def version(self) -> int:
        return self.runtime.version

    @property
    def metadata(self) -> Metadata:
        return self.runtime.metadata

    @property
    def labels(self) -> list[str]:
        return self.runtime.metadata.labels

    @property
    def input(self) -> TensorSpec:
        return self.runtime.inputs[0]

    @property
    def image_size(self) -> tuple[int, int]:
        """(height, width) of the images the model takes, from its declared input [N, height, width, 1]."""
        shape = self.input.shape
        if len(shape) != 4 or shape[3] != 1 or min(shape[1:3]) < 1:
            raise BadRequest(f"{self.name}/{self.version} takes {self.input.datatype} {shape}, not grayscale images "
                             f"[N, height, width, 1]: send tensors to /v2/models/{self.name}/infer")
        return shape[1], shape[2]

    @property
    def output(self) -> TensorSpec:
        return self.runtime.outputs[0]

    @property
    def provider(self) -> str:
        return self.runtime.provider

    def expecting(self) -> AbstractContextManager[None]:
        """Wrap a request's decoding: the batcher may wait a little for requests on their way."""
        return self.batcher.expecting()

    def infer(self, images: np.ndarray) -> np.ndarray:
        """The output rows for images (merged with concurrent requests); always finite."""
        out = self.batcher.submit(images)
        if np.isfinite(out).all():
            return out
        if self.input.range is None:
            # A version published before ranges were required: the client's values are the likely
            # cause (a CNN fed 3e38 overflows), so the client is told which values it sent.
            raise BadRequest(f"{self.name}/{self.version} answered non-finite values for input {self.input.name!r} "
                             f"with values in [{float(images.min()):g}, {float(images.max()):g}]; it declares no input "
                             "range: send values like those it was trained on (its metadata's preprocessing)")
        raise NonFiniteOutput(f"{self.name}/{self.version} answered non-finite values for inputs in range")
