"""The published versions a candidate is judged against, each evaluated now on the test images:
the one the service would serve (the current model) and the most accurate one (the champion).

Recorded metadata accuracy is never used: a tampered or stale metadata.json must not set the
bar. Only files that pass `modelrepo.verify` count, exactly as for the service.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

import modelrepo
from training.data import Split
from training.evaluate import predict_onnx


def pinned_version(repository: Path, name: str, env_pin: int | None) -> int | None:
    """The pin the servers apply: an operator's decision in the repository, else MODEL_VERSION (env_pin).

    A decision overrides the start-up setting, including "follow the newest again". An
    unreadable decision raises RepositoryError: the job stops rather than guess what is served.
    """
    decision = modelrepo.read_decision(repository, name)
    return env_pin if decision is None else decision.pinned


class Scoreboard:
    """Per-image correctness of published versions, computed once per version and file."""

    def __init__(self, repository: Path, name: str, split: Split):
        self.repository, self.name, self.split = repository, name, split
        self._correct: dict[tuple[int, str], np.ndarray] = {}
        self.skipped: dict[int, str] = {}  # versions that are not servable, and why

    def correct(self, version: int) -> np.ndarray | None:
        """Which test images the version classifies correctly; None if it is not servable."""
        try:
            metadata = modelrepo.verify(self.repository, self.name, version)
        except modelrepo.RepositoryError as exc:
            self.skipped[version] = str(exc)
            return None
        key = (version, metadata.sha256)
        if key not in self._correct:
            try:
                self._correct[key] = self.correct_file(modelrepo.version_dir(self.repository, self.name, version) / modelrepo.MODEL_FILE)
            except Exception as exc:  # noqa: BLE001  (onnxruntime raises its own types; the service skips it too)
                self.skipped[version] = f"onnxruntime cannot run it: {exc}"
                return None
        self.skipped.pop(version, None)
        return self._correct[key]

    def correct_file(self, path: Path) -> np.ndarray:
        """Which test images the model in path classifies correctly."""
        return predict_onnx(path, self.split.images).argmax(1) == self.split.labels

    def accuracy(self, version: int | None) -> float | None:
        correct = None if version is None else self.correct(version)
        return None if correct is None else float(correct.mean())

    def current(self, pinned: int | None) -> int | None:
        """The version the service serves: the pin alone, else the newest servable one."""
        return next((v for v in modelrepo.candidates(self.repository, self.name, pinned) if self.correct(v) is not None), None)

    def champion(self) -> int | None:
        """The most accurate servable version (the newest among equals)."""
        scored = [(float(c.mean()), v) for v in modelrepo.list_versions(self.repository, self.name) if (c := self.correct(v)) is not None]
        return max(scored)[1] if scored else None
