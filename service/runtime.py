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
from service import cores
from service.metrics import INFERENCE_SECONDS

log = logging.getLogger(__name__)


# Per-image gain of a merged run over single runs needed to wait for more requests.
WAIT_GAIN = 2.0


class InvalidModel(Exception):
    """A version on disk cannot be served: unreadable, corrupt, or not what its metadata promises."""


def _specs(args) -> list[TensorSpec]:
    return [
        TensorSpec(name=a.name, datatype=modelrepo.ONNX_DATATYPES.get(a.type, "BYTES"),
                   shape=[d if isinstance(d, int) else -1 for d in a.shape])
        for a in args
    ]


def _options(threads: int, spin: bool = True) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if not spin:
        # Pool threads that spin after a run would take the core from another worker's run.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


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
    every_core_session: ort.InferenceSession | None = None  # for a run alone in the server (CPU only)
    alone_runs: cores.LoneRuns | None = None  # which session a run alone in the server uses

    @classmethod
    def load(cls, repository: Path, name: str, version: int, providers: list[str], threads: int,
             expect: Metadata | None = None, max_batch: int = 1, every_core_threads: int = 0) -> "ModelRuntime":
        """Verify, open and warm up a version. Runs at start-up, on hot reload and on admin load.

        Whatever goes wrong (a missing file, a folder where a file should be, a corrupt graph,
        a failing warm-up) comes out as InvalidModel, so one broken folder is one failed version.
        """
        try:
            # The bytes that matched the recorded sha256 are the ones opened: the file is never
            # read again (a pipe swapped in meanwhile would block the worker).
            metadata, model = modelrepo.read_verified(repository, name, version)
            session = ort.InferenceSession(model, _options(threads), providers=providers)
            runtime = cls(name, version, metadata, session, session.get_providers()[0])
            if every_core_threads > threads and runtime.provider == "CPUExecutionProvider":
                runtime._try_every_core(ort.InferenceSession(model, _options(every_core_threads, spin=False), providers=providers))
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

    def _try_every_core(self, every_core: ort.InferenceSession) -> None:
        """Add the every-core session, for runs alone in the server when it is the faster one.

        Kept, it took single-image traffic at concurrency 1 from 232 to 313 img/s on the 2-core
        EPYC. It never spins: spinning pool threads took the core from the other worker's runs
        and cut concurrency 8 from 447 to 275 img/s. Which session is faster is measured here and
        then by every run alone in the server (cores.LoneRuns), since the host changes its mind.
        """
        one_thread, every_core_s = self._best_seconds(1, self.session), self._best_seconds(1, every_core)
        log.info("%s/%s: one image %.2f ms on one thread, %.2f ms on every core", self.name, self.version,
                 one_thread * 1000, every_core_s * 1000)
        self.every_core_session, self.alone_runs = every_core, cores.LoneRuns([one_thread, every_core_s])

    def _best_seconds(self, size: int, session: ort.InferenceSession | None = None, repeats: int = 5) -> float:
        """The fastest of a few runs on zeros of `size` images."""
        spec, session = self.inputs[0], session or self.session
        zeros = np.zeros([size if d < 0 else d for d in spec.shape], dtype=modelrepo.NUMPY_DTYPES[spec.datatype])
        session.run(None, {spec.name: zeros})
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            session.run(None, {spec.name: zeros})
            times.append(time.perf_counter() - started)
        return min(times)

    def merge_wait(self, max_wait_s: float, probe: int = 8) -> float:
        """How long a batch may wait for more requests: only where merging pays, as measured here.

        Times one image and `probe` images (best of three each). Queued requests are merged either
        way (the batcher runs one at a time per worker, which is what a CPU wants too); where a
        merged run is cheaper per image by WAIT_GAIN (a GPU), a batch may also wait for more, for at
        most one single-image run.
        """
        single, merged = self._best_seconds(1), self._best_seconds(probe, repeats=3)
        gain = single / (merged / probe)
        log.info("%s/%s: one image %.2f ms, %d images %.2f ms (merged, an image takes %.2f× its time alone)", self.name,
                 self.version, single * 1000, probe, merged * 1000, 1 / gain)
        return min(max_wait_s, single) if gain >= WAIT_GAIN else 0.0

    def run(self, batch: np.ndarray) -> np.ndarray:
        """The output (the probabilities) for one batch of inputs."""
        n = len(batch)
        if self.pads_batches:
            batch = pad_to_power_of_two(batch)
        started = time.perf_counter()
        if self.every_core_session is None:
            out = self.session.run(None, {self.inputs[0].name: batch})[0]
        else:
            with cores.running() as alone:
                which = self.alone_runs.pick() if alone else 0
                out = (self.every_core_session if which else self.session).run(None, {self.inputs[0].name: batch})[0]
                if alone:
                    self.alone_runs.record(which, time.perf_counter() - started, n)
        INFERENCE_SECONDS.labels(self.name).observe(time.perf_counter() - started)
        return out[:n]
