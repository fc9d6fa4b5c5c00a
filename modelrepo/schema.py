"""metadata.json, as a pydantic schema: what a model version promises the service."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Datatype = Literal["FP32", "FP16", "INT64", "INT32", "UINT8", "INT8", "BOOL", "BYTES"]


class TensorSpec(BaseModel):
    """One input or output; -1 marks the dynamic batch dimension."""

    name: str
    datatype: Datatype
    shape: list[int]


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
    training: dict = Field(default_factory=dict)
    sha256: str
    tool_versions: dict[str, str] = Field(default_factory=dict)
    created: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))
    description: str = ""

    @property
    def test_accuracy(self) -> float | None:
        return self.evaluation.test_accuracy if self.evaluation else None
