"""The human-readable half of a version: curves, confusion matrix and a README model card."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on servers and in CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from modelrepo.paths import REPORT_CARD, REPORT_CONFUSION, REPORT_CURVES  # noqa: E402
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
    training = "\n".join(f"- {key}: `{value}`" for key, value in metadata.training.items()
                         if key not in ("history", "commands", "production", "gate"))
    commands = "\n".join(metadata.training.get("commands", []))
    reproduce = f"\n## Reproduce\n```sh\n{commands}\n```\n" if commands else ""
    accuracy = f"{ev.test_accuracy:.2%} on {ev.test_images:,} test images (onnxruntime)" if ev else "not evaluated"
    # Link only the images write_report draws: a card must not show a broken image.
    confusion_link = f"\n![confusion matrix]({REPORT_CONFUSION})\n" if ev else ""
    curves_link = f"\n![training curves]({REPORT_CURVES})\n" if curves else ""
    cpu = ev.hardware if ev else {}
    if cpu:
        flags = ", ".join(k for k in INT8_KERNEL_FLAGS if cpu.get(k) == "yes") or "none of AVX2/VNNI/AMX"
        accuracy += f", measured on {cpu.get('cpu', 'an unknown CPU')} ({flags}; onnxruntime {cpu.get('onnxruntime', '?')})"
    sections = _production_section(metadata.training.get("production")) + _gate_section(metadata.training.get("gate"))
    return f"""# {metadata.name} — model card

{metadata.description}

- **Test accuracy:** {accuracy}
- **Input:** `{metadata.inputs[0].name}` {metadata.inputs[0].datatype} {metadata.inputs[0].shape}
- **Output:** `{metadata.outputs[0].name}` {metadata.outputs[0].datatype} {metadata.outputs[0].shape}
- **sha256:** `{metadata.sha256}`

{HONESTY}

## Preprocessing
{metadata.preprocessing}

{reproduce}{sections}
## Per-class precision and recall
| class | precision | recall |
|---|---:|---:|
{rows}
{confusion_link}
## Training
{training}
{curves_link}"""


def _production_section(production: dict | None) -> str:
    if not production:
        return ""
    return (f"\n## Production data\n{production['train_images']:,} labelled production images trained on and the newest "
            f"{production['holdout_images']:,} held out for the gate (never trained on), captured from "
            f"{production['captured_from']} to {production['captured_until']} (holdout from {production['holdout_from']}).\n"
            f"sha256 of their capture ids: `{production['ids_sha256']}`. A copy of exactly those images and labels: "
            f"`{production['copy']}`; the Reproduce commands read it, not the database.\n")


def _gate_section(gate: dict | None) -> str:
    if not gate:
        return ""
    rows = [f"| clean test, {c['reference']} v{c['version']} | {gate['candidate_accuracy']:.4f} | {c['accuracy']:.4f} | "
            f"{c['candidate_only']} / {c['reference_only']} | {c['p_value']:.3g} (worse) |" for c in gate["comparisons"]]
    if gate.get("production"):
        p, c = gate["production"], gate["production"]["comparison"]
        rows.append(f"| production holdout, current v{c['version']} | {p['candidate_accuracy']:.4f} | {c['accuracy']:.4f} | "
                    f"{c['candidate_only']} / {c['reference_only']} | {p['better_p_value']:.3g} (better) |")
    return ("\n## Promotion gate\n| test set, reference | candidate | reference | disagreements (candidate / reference) | McNemar p |\n"
            "|---|---:|---:|---:|---:|\n" + "\n".join(rows) + f"\n\n{gate['reason']}\n")


def write_report(metadata: Metadata, history: dict[str, list[float]] | None, directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    if history:
        plot_curves(history, directory / REPORT_CURVES)
    if metadata.evaluation:
        plot_confusion(metadata.evaluation.confusion_matrix, metadata.labels, directory / REPORT_CONFUSION)
    (directory / REPORT_CARD).write_text(model_card(metadata, curves=bool(history)))
