"""One onnxruntime session: provider choice, validation against metadata, warm-up, run."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import onnxruntime as ort

import modelrepo
from modelrepo import Metadata, TensorSpec
from service.errors import ServingError
from service.device import DeviceUnavailable, providers  # noqa: F401  (re-exported)
from service.metrics import INFERENCE_SECONDS

log = logging.getLogger(__name__)

NUMPY_TYPES = modelrepo.NUMPY_DTYPES
ORT_TYPES = modelrepo.ONNX_DATATYPES


class InvalidModel(ServingError):
    """A version on disk cannot be served: corrupt, or not what its metadata promises."""

    status = 400


def _specs(args) -> list[TensorSpec]:
    return [
        TensorSpec(name=a.name, datatype=ORT_TYPES.get(a.type, "BYTES"), shape=[d if isinstance(d, int) else -1 for d in a.shape])
        for a in args
    ]


def pad_to_power_of_two(batch: np.ndarray) -> np.ndarray:
    """batch with zero rows appended up to the next power of two (unchanged if it is one)."""
    n = len(batch)
    if n & (n - 1) == 0:
        return batch
    padding = np.zeros(((1 << n.bit_length()) - n, *batch.shape[1:]), dtype=batch.dtype)
    return np.concatenate([batch, padding])


@dataclass
class ModelRuntime:
    """A loaded, validated, warmed-up version of one model."""

    name: str
    version: int
    metadata: Metadata
    session: ort.InferenceSession
    provider: str

    @classmethod
    def load(cls, repository: Path, name: str, version: int, provider_list: list[str], threads: int, expect: Metadata | None = None,
             max_batch: int = 1) -> "ModelRuntime":
        """Verify, open and warm up a version folder. Runs at start-up and on every hot reload."""
        try:
            metadata = modelrepo.verify(repository, name, version)
        except modelrepo.RepositoryError as exc:
            raise InvalidModel(str(exc)) from None
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        directory = modelrepo.version_dir(repository, name, version)
        try:
            session = ort.InferenceSession(str(directory / modelrepo.MODEL_FILE), options, providers=provider_list)
        except Exception as exc:  # onnxruntime raises several types for a corrupt file
            raise InvalidModel(f"{directory}: onnxruntime cannot load model.onnx: {exc}") from None
        runtime = cls(metadata.name, metadata.version, metadata, session, session.get_providers()[0])
        runtime._check(expect)
        runtime.warm_up(max_batch)
        return runtime

    @cached_property
    def inputs(self) -> list[TensorSpec]:
        return _specs(self.session.get_inputs())

    @cached_property
    def outputs(self) -> list[TensorSpec]:
        return _specs(self.session.get_outputs())

    def _check(self, expect: Metadata | None) -> None:
        # The graph must be what metadata.json says, and a new version must keep the served contract.
        declared = self.metadata.inputs, self.metadata.outputs
        if [s.signature() for s in self.inputs + self.outputs] != [s.signature() for s in declared[0] + declared[1]]:
            raise InvalidModel(f"{self.name}/{self.version}: graph tensors {self.inputs} {self.outputs} differ from metadata {declared}")
        if len(self.metadata.labels) != self.outputs[0].shape[-1]:
            raise InvalidModel(f"{self.name}/{self.version}: {len(self.metadata.labels)} labels for {self.outputs[0].shape[-1]} outputs")
        if expect is not None and ([s.signature() for s in expect.inputs + expect.outputs], expect.labels) != ([s.signature() for s in declared[0] + declared[1]], self.metadata.labels):
            raise InvalidModel(f"{self.name}/{self.version}: tensors or labels differ from the served version {expect.version}")

    @property
    def pads_batches(self) -> bool:
        # cuDNN picks convolution algorithms per input shape, by benchmarking them (~100 ms).
        # Merged batches come in every size, so on the GPU they are padded to a power of two:
        # a handful of shapes, each tuned once during warm-up.
        return self.provider == "CUDAExecutionProvider"

    def warm_up(self, max_batch: int = 1) -> None:
        """Inference on zeros (every padded batch size on the GPU) before the version takes traffic."""
        spec = self.inputs[0]
        sizes = [1 << i for i in range(max(max_batch - 1, 1).bit_length() + 1)] if self.pads_batches else [1]
        for size in sizes:
            zeros = np.zeros([size if d < 0 else d for d in spec.shape], dtype=NUMPY_TYPES[spec.datatype])
            out = self.session.run(None, {spec.name: zeros})[0]
            if out.shape[-1] != len(self.metadata.labels) or not np.isfinite(out).all():
                raise InvalidModel(f"{self.name}/{self.version}: warm-up produced {out.shape} / non-finite values")

    def run(self, batch: np.ndarray, output_names: list[str] | None = None) -> list[np.ndarray]:
        """All (or the named) outputs for one batch of inputs."""
        n = len(batch)
        if self.pads_batches:
            batch = pad_to_power_of_two(batch)
        started = time.perf_counter()
        outputs = self.session.run(output_names, {self.inputs[0].name: batch})
        INFERENCE_SECONDS.labels(self.name).observe(time.perf_counter() - started)
        return [out[:n] for out in outputs]

    def run_first(self, batch: np.ndarray) -> np.ndarray:
        """The first output (the probabilities) for one batch: what the batcher calls."""
        return self.run(batch)[0]
