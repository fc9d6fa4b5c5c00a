"""The human-readable half of a version: curves, confusion matrix and a README model card."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on servers and in CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from modelrepo.schema import Metadata  # noqa: E402
from training.hardware import INT8_KERNEL_FLAGS  # noqa: E402


def plot_curves(history: dict[str, list[float]], path: Path) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for ax, metric in zip(axes, ("loss", "accuracy")):
        for prefix, style in (("", "-"), ("val_", "--")):
            if prefix + metric in history:
                ax.plot(range(1, len(history[prefix + metric]) + 1), history[prefix + metric], style, label=prefix + metric)
        ax.set_xlabel("epoch")
        ax.set_title(metric)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_confusion(confusion: list[list[int]], labels: list[str], path: Path) -> None:
    matrix = np.array(confusion)
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for (i, j), count in np.ndenumerate(matrix):
        ax.text(j, i, count, ha="center", va="center", fontsize=7, color="white" if count > matrix.max() / 2 else "black")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


# How the figures were obtained; true of every version `training` publishes.
HONESTY = (
    "Model selection (the epoch kept, early stopping) used the validation split only: the last "
    "5,000 of the 60,000 training images, never trained on. The 10,000 test images were read once "
    "for this version, after training, to measure the figures above. The retraining gate reads them "
    "again for one pass/fail decision per retrain (may a successor replace this version?); they never "
    "train, tune or pick an epoch."
)


def model_card(metadata: Metadata, curves: bool = False) -> str:
    """A README.md for the version folder, from its metadata (curves: training_curves.png exists)."""
    ev = metadata.evaluation
    rows = "\n".join(f"| {c.label} | {c.precision:.3f} | {c.recall:.3f} |" for c in ev.per_class) if ev else ""
    training = "\n".join(f"- {key}: `{value}`" for key, value in metadata.training.items() if key not in ("history", "commands"))
    commands = "\n".join(metadata.training.get("commands", []))
    reproduce = f"\n## Reproduce\n```sh\n{commands}\n```\n" if commands else ""
    accuracy = f"{ev.test_accuracy:.2%} on {ev.test_images:,} test images (onnxruntime)" if ev else "not evaluated"
    # Link only the images write_report draws: a card must not show a broken image.
    confusion_link = "\n![confusion matrix](confusion_matrix.png)\n" if ev else ""
    curves_link = "\n![training curves](training_curves.png)\n" if curves else ""
    cpu = ev.hardware if ev else {}
    if cpu:
        flags = ", ".join(k for k in INT8_KERNEL_FLAGS if cpu.get(k) == "yes") or "none of AVX2/VNNI/AMX"
        accuracy += f", measured on {cpu.get('cpu', 'an unknown CPU')} ({flags}; onnxruntime {cpu.get('onnxruntime', '?')})"
    return f"""# {metadata.name} — model card

{metadata.description}

- **Test accuracy:** {accuracy}
- **Input:** `{metadata.inputs[0].name}` {metadata.inputs[0].datatype} {metadata.inputs[0].shape}
- **Output:** `{metadata.outputs[0].name}` {metadata.outputs[0].datatype} {metadata.outputs[0].shape}
- **sha256:** `{metadata.sha256}`

{HONESTY}

## Preprocessing
{metadata.preprocessing}

{reproduce}
## Per-class precision and recall
| class | precision | recall |
|---|---:|---:|
{rows}
{confusion_link}
## Training
{training}
{curves_link}"""


def write_report(metadata: Metadata, history: dict[str, list[float]] | None, directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    if history:
        plot_curves(history, directory / "training_curves.png")
    if metadata.evaluation:
        plot_confusion(metadata.evaluation.confusion_matrix, metadata.labels, directory / "confusion_matrix.png")
    (directory / "README.md").write_text(model_card(metadata, curves=bool(history)))
