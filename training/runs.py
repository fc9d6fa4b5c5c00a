"""Reading a run folder back: the model to export, its summary, and the commands behind it.

`train` writes config.json when it starts, best.keras and a history.csv row each epoch, and
model.keras and run.json only when it finishes. A run that was stopped has the first three,
and is exported from its best checkpoint.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import TYPE_CHECKING

import modelrepo
from training.config import TrainConfig, command_line

if TYPE_CHECKING:
    import keras

FINISHED, BEST = "model.keras", "best.keras"


def load_run(run_dir: Path) -> tuple[keras.Model, dict]:
    """The Keras model and run summary that `train` saved, or its best checkpoint if stopped."""
    import keras  # noqa: PLC0415  (the rest of this module is read without TensorFlow)

    if (run_dir / FINISHED).is_file() and (run_dir / "run.json").is_file():
        return keras.models.load_model(run_dir / FINISHED), json.loads((run_dir / "run.json").read_text())
    if not (run_dir / BEST).is_file() or not (run_dir / "config.json").is_file():
        raise FileNotFoundError(f"{run_dir}: neither {FINISHED} + run.json nor {BEST} + config.json (is it a `train` run folder?)")
    return keras.models.load_model(run_dir / BEST), interrupted_summary(run_dir)


def interrupted_summary(run_dir: Path) -> dict:
    """What run.json would have said, rebuilt from config.json and history.csv."""
    history: dict[str, list[float]] = {}
    if (run_dir / "history.csv").is_file():
        with open(run_dir / "history.csv", newline="") as f:
            for row in csv.DictReader(f):
                for key, value in row.items():
                    if key != "epoch" and value:
                        history.setdefault(key, []).append(float(value))
    val = history.get("val_accuracy", [])
    return {
        "config": json.loads((run_dir / "config.json").read_text()),
        "history": history,
        "epochs_run": len(val),
        # best.keras is rewritten only when validation improves, so it holds the best epoch.
        "best_epoch": val.index(max(val)) + 1 if val else None,
        "training_seconds": None,
        "interrupted": True,
    }


def lineage(run_dir: Path) -> list[str]:
    """The commands behind a run, oldest first, following --init-from back to its run or version."""
    commands, seen = [], set()
    # A run restarted into its own folder has overwritten its parent's config: stop there.
    while run_dir is not None and run_dir.resolve() not in seen:
        config = _config(run_dir)
        if config is None:
            break
        seen.add(run_dir.resolve())
        commands.insert(0, command_line(config, run_dir))
        if config.init_from and Path(config.init_from).suffix == ".onnx":
            # Warm-started from a published version: its card lists what made it.
            return _version_commands(Path(config.init_from).parent) + commands
        run_dir = Path(config.init_from).parent if config.init_from else None
    return commands


def parent_commands(init_from: str | None) -> list[str]:
    """The commands behind what a run starts from: a published version's card, or a run's lineage."""
    if not init_from:
        return []
    parent = Path(init_from).parent
    return _version_commands(parent) if Path(init_from).suffix == ".onnx" else lineage(parent)


def _config(run_dir: Path) -> TrainConfig | None:
    for name, read in (("config.json", lambda d: d), ("run.json", lambda d: d["config"])):
        if (run_dir / name).is_file():
            return TrainConfig(**read(json.loads((run_dir / name).read_text())))
    return None


def _version_commands(version_dir: Path) -> list[str]:
    try:
        return list(modelrepo.read_metadata(version_dir).training.get("commands", []))
    except modelrepo.RepositoryError:
        return []
