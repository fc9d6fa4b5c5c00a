"""Which onnxruntime execution providers to use for DEVICE=auto|cpu|cuda.

Kept apart from the runtime so the launcher can check the device before gunicorn starts,
without importing the metrics (which need PROMETHEUS_MULTIPROC_DIR to exist first).
"""
from __future__ import annotations

import logging

import onnxruntime as ort

log = logging.getLogger(__name__)


class DeviceUnavailable(RuntimeError):
    """DEVICE=cuda was asked for and onnxruntime has no CUDA provider."""


def providers(device: str) -> list[str]:
    """Execution providers for DEVICE (auto|cpu|cuda), best first."""
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if hasattr(ort, "preload_dlls"):
        # The CUDA and cuDNN libraries come from pip's nvidia-* wheels; this puts them on the path.
        try:
            ort.preload_dlls()
        except Exception as exc:  # a CPU-only machine: nothing to preload
            log.debug("preload_dlls: %s", exc)
    if "CUDAExecutionProvider" in ort.get_available_providers():
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if device == "cuda":
        raise DeviceUnavailable(
            f"DEVICE=cuda but onnxruntime {ort.__version__} has no CUDAExecutionProvider "
            f"(available: {', '.join(ort.get_available_providers())}); install onnxruntime-gpu or set DEVICE=auto"
        )
    return ["CPUExecutionProvider"]
