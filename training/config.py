"""Training hyperparameters and the command lines that reproduce them (no TensorFlow here:
the CLI builds its options from this module without paying for the TensorFlow import)."""
from __future__ import annotations

from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import NamedTuple

# `--init-from` values that are not paths.
SERVED = "served"  # the weights of the version the service serves (retrain only)
NONE = "none"  # random initialisation

# The promotion gate's defaults (training/gate.py): the absolute floor, and the level at which a
# candidate is significantly worse than a reference.
MIN_ACCURACY = 0.90
SIGNIFICANCE = 0.05


@dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters; each one is a CLI option of `python -m training train`."""

    epochs: int = 13
    batch_size: int = 32
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    label_smoothing: float = 0.1
    augment: bool = True
    patience: int = 6
    seed: int = 42
    limit: int | None = None
    ema_momentum: float = 0.0
    # A .keras file (a run's model.keras or best.keras) or a published model.onnx.
    init_from: str | None = None


# The scheduled retrain: one short, low-rate cosine cycle with a weight EMA, warm-started from
# the served version. It is the last cycle of the recipe behind the shipped model (README,
# "The model"), which took that model's parent from 92.36% to 92.60% validation accuracy.
RETRAIN = replace(TrainConfig(), epochs=4, learning_rate=1.5e-4, ema_momentum=0.999, patience=4, init_from=SERVED)


def command_line(config: TrainConfig, run_dir: Path) -> str:
    """The `python -m training train` call that reproduces config, every option spelled out
    so that it stays true when the defaults change."""
    words = ["python -m training train"]
    for field in fields(TrainConfig):
        value, flag = getattr(config, field.name), "--" + field.name.replace("_", "-")
        if value is None:
            continue
        words.append(flag if value is True else f"--no-{flag[2:]}" if value is False else f"{flag} {value}")
    return " ".join([*words, f"--run-dir {run_dir}"])


class QuantScheme(NamedTuple):
    """onnxruntime static quantization settings (QDQ, per-channel int8 weights)."""

    activations: str  # onnxruntime QuantType name
    reduce_range: bool  # 7-bit weights
    description: str


QUANT_SCHEMES = {
    # fashion-mnist-int8/1. On AVX2, onnxruntime's uint8×int8 kernel (vpmaddubsw) adds pairs of
    # products into int16 and saturates: 91.57% here, 92.04% on an AVX-512 VNNI CPU.
    "u8s8": QuantScheme("QUInt8", False, "onnxruntime static QDQ, U8 activations (percentile calibration), S8 per-channel weights"),
    # 7-bit weights keep every pair sum inside int16: the same predictions on every CPU.
    "u8s8-reduce-range": QuantScheme("QUInt8", True, "onnxruntime static QDQ, U8 activations (percentile calibration), "
                                                     "S8 per-channel weights in 7 bits (reduce_range: no AVX2 saturation)"),
    "s8s8": QuantScheme("QInt8", False, "onnxruntime static QDQ, S8 activations (percentile calibration), S8 per-channel weights"),
}
QUANT_SCHEME = "u8s8-reduce-range"
