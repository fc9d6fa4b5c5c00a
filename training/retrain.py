"""The retraining job: train a candidate, export and evaluate it, promote it only if it is good enough."""
from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import modelrepo
from modelrepo import Metadata
from training.data import load_data
from training.publish import prepare, publish
from training.train import TrainConfig, summary, train

EXIT_PROMOTED = 0
EXIT_REJECTED = 3
EXIT_FAILED = 4

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Gate:
    """Promote when accuracy ≥ max(min_accuracy, current − max_regression)."""

    min_accuracy: float = 0.90
    max_regression: float = 0.005

    def threshold(self, current: Metadata | None) -> float:
        if current is None or current.test_accuracy is None:
            return self.min_accuracy
        return max(self.min_accuracy, current.test_accuracy - self.max_regression)


def retrain(repository: Path, name: str, config: TrainConfig, gate: Gate, keep: int | None, report: Path | None) -> int:
    """Run the whole job; returns the process exit code and writes a JSON report."""
    outcome: dict = {"model": name, "started": datetime.now(timezone.utc).isoformat(), "config": config.__dict__}
    try:
        code = _run(repository, name, config, gate, keep, outcome)
    except Exception as exc:  # the job must always leave a report, whatever broke
        log.exception("retraining failed")
        outcome.update(status="failed", error=f"{type(exc).__name__}: {exc}")
        code = EXIT_FAILED
    outcome["finished"] = datetime.now(timezone.utc).isoformat()
    path = report or repository / name / ".reports" / f"retrain-{datetime.now(timezone.utc):%Y%m%dT%H%M%S%fZ}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(outcome, indent=2))
    print(f"{outcome['status']}: {outcome.get('reason', outcome.get('error', ''))} (report: {path})")
    return code


def _run(repository: Path, name: str, config: TrainConfig, gate: Gate, keep: int | None, outcome: dict) -> int:
    data = load_data()
    result = train(data, config)
    with tempfile.TemporaryDirectory(prefix="candidate-") as staging:
        candidate = prepare(result.model, summary(result), data, name, Path(staging))
        outcome["candidate_accuracy"] = candidate.accuracy

        def accept() -> bool:
            # Runs under the repository lock, so the comparison is with the version we would follow.
            served = modelrepo.served_version(repository, name)
            current = served[1] if served else None
            outcome.update(current_version=current.version if current else None, threshold=gate.threshold(current),
                           current_accuracy=current.test_accuracy if current else None)
            return candidate.accuracy >= outcome["threshold"]

        try:
            version = publish(candidate, repository, accept)
        except modelrepo.Rejected:
            outcome.update(status="rejected", reason=f"accuracy {candidate.accuracy:.4f} < threshold {outcome['threshold']:.4f}")
            return EXIT_REJECTED
    outcome.update(status="promoted", version=version, reason=f"accuracy {candidate.accuracy:.4f} ≥ {outcome['threshold']:.4f}")
    if keep:
        protect = {version, outcome["current_version"]} - {None}
        outcome["pruned"] = modelrepo.prune(repository, name, keep, protect)
    return EXIT_PROMOTED
