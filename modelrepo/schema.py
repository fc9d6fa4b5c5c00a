"""metadata.json, as a pydantic schema: what a model version promises the service."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

Datatype = Literal["FP32", "FP16", "INT64", "INT32", "UINT8", "INT8", "BOOL", "BYTES"]

# The one dtype table: Open Inference Protocol datatype, numpy dtype, onnxruntime type string.
# BYTES has no fixed-size numpy dtype and no ONNX tensor type we serve.
_DTYPES: tuple[tuple[str, type, str], ...] = (
    ("FP32", np.float32, "tensor(float)"),
    ("FP16", np.float16, "tensor(float16)"),
    ("INT64", np.int64, "tensor(int64)"),
    ("INT32", np.int32, "tensor(int32)"),
    ("UINT8", np.uint8, "tensor(uint8)"),
    ("INT8", np.int8, "tensor(int8)"),
    ("BOOL", np.bool_, "tensor(bool)"),
)
NUMPY_DTYPES: dict[str, np.dtype] = {datatype: np.dtype(numpy) for datatype, numpy, _ in _DTYPES}
ONNX_DATATYPES: dict[str, str] = {onnx: datatype for datatype, _, onnx in _DTYPES}

class TensorSpec(BaseModel):
    """One input or output; -1 marks the dynamic batch dimension."""

    name: str
    datatype: Datatype
    shape: list[int]
    # The values the model was trained on, inclusive (inputs only). The service refuses values
    # outside it: a CNN fed 3e38 answers NaN, and that must never reach a client as a 200.
    range: tuple[float, float] | None = None

    def signature(self) -> tuple[str, str, tuple[int, ...]]:
        """What must match between the graph, metadata.json and a replacing version."""
        return self.name, self.datatype, tuple(self.shape)


class ClassMetrics(BaseModel):
    label: str
    precision: float
    recall: float


class Evaluation(BaseModel):
    """How the version scored on the 10,000 test images, measured with onnxruntime."""

    test_accuracy: float
    test_images: int
    per_class: list[ClassMetrics]
    confusion_matrix: list[list[int]]
    # Where it was measured: int8 kernels differ between CPUs (AVX2, AVX-512 VNNI, AMX).
    hardware: dict[str, str] = Field(default_factory=dict)


class Reference(BaseModel):
    """What the version's predictions and inputs looked like on a held-out split: drift is measured against it.

    The histograms share the service's buckets (service/metrics.py SHARE_BUCKETS): cumulative
    shares at each upper bound, like Prometheus' `le`.
    """

    split: str  # which images, e.g. "fashion-mnist test (10000)"
    images: int = Field(ge=1)
    class_share: list[float]  # share of top-1 predictions per class, in label order
    confidence_mean: float  # mean top-1 probability
    confidence_cumulative: dict[str, float]  # le → share of images with top-1 probability ≤ le
    input_mean_intensity: float  # mean of each image's input, as a share of the input range
    input_intensity_cumulative: dict[str, float]


class Metadata(BaseModel):
    model_config = ConfigDict(extra="allow", protected_namespaces=())

    name: str
    version: int = Field(default=0, ge=0)  # 0 until `publish` allocates the real one
    platform: str = "onnxruntime_onnx"
    labels: list[str]
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    preprocessing: str
    evaluation: Evaluation | None = None
    reference: Reference | None = None  # absent in versions published before drift monitoring
    training: dict = Field(default_factory=dict)
    sha256: str
    tool_versions: dict[str, str] = Field(default_factory=dict)
    created: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))
    description: str = ""

    @property
    def test_accuracy(self) -> float | None:
        return self.evaluation.test_accuracy if self.evaluation else None
