"""Static int8 quantization (QDQ), calibrated on training images, never on test images, and
its publication as a model of its own."""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quant_pre_process, quantize_static

import modelrepo
from training.config import QUANT_SCHEME, QUANT_SCHEMES
from training.contract import INPUT_NAME
from training.data import load_data
from training.evaluate import evaluate_onnx
from training.publish import Candidate, base_metadata, publish
from training.report import write_report

CALIBRATION_BATCH = 100


class _Batches(CalibrationDataReader):
    def __init__(self, input_name: str, images: np.ndarray):
        self._feeds = iter({input_name: images[i : i + CALIBRATION_BATCH]} for i in range(0, len(images), CALIBRATION_BATCH))

    def get_next(self):
        return next(self._feeds, None)


def quantize(fp32: Path, int8: Path, calibration: np.ndarray, input_name: str = INPUT_NAME, scheme: str = QUANT_SCHEME) -> None:
    """Write an int8 QDQ copy of fp32 to int8, with activation ranges from calibration images."""
    settings = QUANT_SCHEMES[scheme]
    with tempfile.TemporaryDirectory() as tmp:
        # Shape inference and constant folding first, as onnxruntime recommends before quantizing.
        prepared = Path(tmp) / "prepared.onnx"
        # ONNX shape inference is enough here (every dimension but the batch is fixed); the
        # symbolic one needs sympy, which nothing else in the trainer image uses.
        quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared),
            str(int8),
            _Batches(input_name, calibration),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType[settings.activations],
            weight_type=QuantType.QInt8,
            per_channel=True,
            reduce_range=settings.reduce_range,
            # Percentile ranges ignore the rare extreme activations that MinMax stretches for:
            # measured on the first shipped model, 0.48 points below fp32 instead of 0.57.
            calibrate_method=CalibrationMethod.Percentile,
        )


def publish_quantized(repository: Path, source: str, version: int | None, name: str, calibration_images: int,
                      scheme: str = QUANT_SCHEME) -> tuple[int, float, float] | None:
    """Quantize a published version (default: the newest valid one), evaluate both on this CPU
    and publish the int8 copy as `name`: (its version, int8 and fp32 accuracy); None if no source."""
    served = modelrepo.served_version(repository, source, version)
    if served is None:
        return None
    version, source_meta = served
    fp32 = modelrepo.version_dir(repository, source, version) / modelrepo.MODEL_FILE
    command = (f"python -m training quantize --repository {repository} --source {source} --version {version}"
               f" --name {name} --calibration-images {calibration_images} --scheme {scheme}")
    data = load_data()
    with tempfile.TemporaryDirectory(prefix="candidate-") as staging:
        int8 = Path(staging) / modelrepo.MODEL_FILE
        quantize(fp32, int8, data.train.images[:calibration_images], scheme=scheme)
        evaluation = evaluate_onnx(int8, data.test)
        fp32_accuracy = evaluate_onnx(fp32, data.test).test_accuracy  # on this CPU, not the recorded figure
        training = {"quantized_from": f"{source}/{version}", "method": QUANT_SCHEMES[scheme].description,
                    "calibration_images": f"first {calibration_images} training images", "source_test_accuracy": fp32_accuracy,
                    "commands": [*source_meta.training.get("commands", []), command]}
        metadata = base_metadata(name, evaluation, training, tools=("onnx", "onnxruntime"), sha256=modelrepo.sha256_file(int8),
                                 description=f"int8 (QDQ) quantization of {source}/{version}.")
        write_report(metadata, None, Path(staging) / modelrepo.REPORT_DIR)
        published = publish(Candidate(Path(staging), metadata, None), repository)
    return published, evaluation.test_accuracy, fp32_accuracy
