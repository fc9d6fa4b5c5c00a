"""One onnxruntime session: verify the version, open it, check it, warm it up, run it."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

import modelrepo
from modelrepo import Metadata, TensorSpec
from service.metrics import INFERENCE_SECONDS

log = logging.getLogger(__name__)


class InvalidModel(Exception):
    """A version on disk cannot be served: unreadable, corrupt, or not what its metadata promises."""


def _specs(args) -> list[TensorSpec]:
    return [
        TensorSpec(name=a.name, datatype=modelrepo.ONNX_DATATYPES.get(a.type, "BYTES"),
                   shape=[d if isinstance(d, int) else -1 for d in a.shape])
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
    def load(cls, repository: Path, name: str, version: int, providers: list[str], threads: int,
             expect: Metadata | None = None, max_batch: int = 1) -> "ModelRuntime":
        """Verify, open and warm up a version. Runs at start-up, on hot reload and on admin load.

        Whatever goes wrong (a missing file, a folder where a file should be, a corrupt graph,
        a failing warm-up) comes out as InvalidModel, so one broken folder is one failed version.
        """
        try:
            metadata = modelrepo.verify(repository, name, version)
            model = modelrepo.inside(repository, modelrepo.version_dir(repository, name, version) / modelrepo.MODEL_FILE)
            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            session = ort.InferenceSession(str(model), options, providers=providers)
            runtime = cls(name, version, metadata, session, session.get_providers()[0])
            runtime._check(expect)
            runtime.warm_up(max_batch)
        except InvalidModel:
            raise
        except modelrepo.RepositoryError as exc:
            raise InvalidModel(str(exc)) from None
        except Exception as exc:  # onnxruntime raises several types for a corrupt graph; I/O can fail anywhere
            raise InvalidModel(f"{name}/{version}: {type(exc).__name__}: {exc}") from exc
        return runtime

    @property
    def inputs(self) -> list[TensorSpec]:
        """The declared inputs (with their value ranges), checked against the graph at load."""
        return self.metadata.inputs

    @property
    def outputs(self) -> list[TensorSpec]:
        return self.metadata.outputs

    def _check(self, expect: Metadata | None) -> None:
        # The graph must be what metadata.json says, and a new version must keep the served contract.
        graph = [s.signature() for s in _specs(self.session.get_inputs()) + _specs(self.session.get_outputs())]
        declared = [s.signature() for s in self.inputs + self.outputs]
        if graph != declared:
            raise InvalidModel(f"{self.name}/{self.version}: graph tensors {graph} differ from metadata {declared}")
        if len(self.inputs) != 1 or len(self.outputs) != 1:
            raise InvalidModel(f"{self.name}/{self.version}: one input and one output are served, the graph has {len(graph)} tensors")
        if len(self.metadata.labels) != self.outputs[0].shape[-1]:
            raise InvalidModel(f"{self.name}/{self.version}: {len(self.metadata.labels)} labels for {self.outputs[0].shape[-1]} outputs")
        if expect is not None and ([s.signature() for s in expect.inputs + expect.outputs], expect.labels) != (declared, self.metadata.labels):
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
            zeros = np.zeros([size if d < 0 else d for d in spec.shape], dtype=modelrepo.NUMPY_DTYPES[spec.datatype])
            out = self.session.run(None, {spec.name: zeros})[0]
            if out.shape[-1] != len(self.metadata.labels) or not np.isfinite(out).all():
                raise InvalidModel(f"{self.name}/{self.version}: warm-up produced {out.shape} / non-finite values")

    def merge_wait(self, max_wait_s: float, probe: int = 8, gain_needed: float = 2.0) -> float:
        """How long a batch may wait for more requests: only where merging pays.

        Times one image and `probe` images (best of three each): if a merged run is at least
        `gain_needed` times cheaper per image (a GPU), a batch may wait, for at most one single-
        image run; otherwise (a CPU, where per-image cost barely falls) it never waits.
        """
        spec = self.inputs[0]

        def best(size: int) -> float:
            zeros = np.zeros([size if d < 0 else d for d in spec.shape], dtype=modelrepo.NUMPY_DTYPES[spec.datatype])
            times = []
            for _ in range(3):
                started = time.perf_counter()
                self.session.run(None, {spec.name: zeros})
                times.append(time.perf_counter() - started)
            return min(times)

        single, merged = best(1), best(probe)
        gain = single / (merged / probe)
        log.info("%s/%s: one image %.2f ms, %d images %.2f ms (%.1f× cheaper each merged)", self.name, self.version,
                 single * 1000, probe, merged * 1000, gain)
        return min(max_wait_s, single) if gain >= gain_needed else 0.0

    def run(self, batch: np.ndarray) -> np.ndarray:
        """The output (the probabilities) for one batch of inputs."""
        n = len(batch)
        if self.pads_batches:
            batch = pad_to_power_of_two(batch)
        started = time.perf_counter()
        out = self.session.run(None, {self.inputs[0].name: batch})[0]
        INFERENCE_SECONDS.labels(self.name).observe(time.perf_counter() - started)
        return out[:n]
