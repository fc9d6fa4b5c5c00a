"""The retraining job: train a candidate from the served weights, export and evaluate it, and
promote it only if the gate (training/gate.py) finds it no worse than what it would replace.

Exit codes: 0 promoted (a failed prune afterwards is only a warning), 2 dataset missing or
unreadable, 3 rejected, 4 failed. Every run leaves a JSON report, whatever happened.
"""
from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

import modelrepo
from training.config import MIN_ACCURACY, SERVED, SIGNIFICANCE, TrainConfig, command_line
from training.data import DatasetError, load_data
from training.gate import decide
from training.publish import prepare, publish
from training.runs import parent_commands
from training.scoreboard import Scoreboard, pinned_version

EXIT_PROMOTED = 0
EXIT_DATASET = 2
EXIT_REJECTED = 3
EXIT_FAILED = 4
RUN_DIR = Path("runs/retrain")  # where the card's "Reproduce" commands put the run

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Job:
    """What one run of the job does; each field is a `retrain` option."""

    repository: Path
    name: str
    config: TrainConfig
    min_accuracy: float = MIN_ACCURACY
    significance: float = SIGNIFICANCE
    keep: int | None = None
    pin: int | None = None  # MODEL_VERSION of the servers (an operator's decision in the repository wins)
    report: Path | None = None


def retrain(job: Job) -> int:
    """Run the whole job; returns the process exit code and writes a JSON report."""
    outcome: dict = {"model": job.name, "started": datetime.now(timezone.utc).isoformat(), "config": asdict(job.config)}
    try:
        code = _run(job, outcome)
    except DatasetError as exc:
        outcome.update(status="dataset missing", error=str(exc))
        code = EXIT_DATASET
    except Exception as exc:  # the job must always leave a report, whatever broke
        log.exception("retraining failed")
        outcome.update(status="failed", error=f"{type(exc).__name__}: {exc}")
        code = EXIT_FAILED
    outcome["finished"] = datetime.now(timezone.utc).isoformat()
    path = job.report or job.repository / job.name / ".reports" / f"retrain-{datetime.now(timezone.utc):%Y%m%dT%H%M%S%fZ}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(outcome, indent=2))
    print(f"{outcome['status']}: {outcome.get('reason', outcome.get('error', ''))} (report: {path})")
    return code


def _run(job: Job, outcome: dict) -> int:
    data = load_data()
    from training.train import summary, train  # noqa: PLC0415  (TensorFlow, once the dataset is there)

    board = Scoreboard(job.repository, job.name, data.test)
    config = _initial_weights(job, board, outcome)
    result = train(data, config)
    run = summary(result) | {"commands": [*parent_commands(config.init_from), command_line(config, RUN_DIR),
                                          f"python -m training export {RUN_DIR} --repository {job.repository}"]}
    with tempfile.TemporaryDirectory(prefix="candidate-") as staging:
        candidate = prepare(result.model, run, data, job.name, Path(staging))
        correct = board.correct_file(Path(staging) / modelrepo.MODEL_FILE)
        outcome["candidate_accuracy"] = candidate.accuracy
        # Evaluate the references before taking the lock; under it, only a version that
        # appeared or a pin that changed meanwhile costs an evaluation.
        board.champion()
        board.current(pinned_version(job.repository, job.name, job.pin))

        def accept() -> bool:
            pinned = pinned_version(job.repository, job.name, job.pin)
            current, champion = board.current(pinned), board.champion()
            references = {role: (v, board.correct(v)) for role, v in (("current", current), ("champion", champion)) if v is not None}
            if champion == current:
                references.pop("champion", None)  # one model, one test
            verdict = decide(correct, references, job.min_accuracy, job.significance)
            outcome.update(pinned=pinned, current_version=current, current_accuracy=board.accuracy(current),
                           champion_version=champion, champion_accuracy=board.accuracy(champion),
                           not_servable={str(v): why for v, why in board.skipped.items()},
                           decision="promote" if verdict.promote else "reject", reason=verdict.reason, gate=verdict.as_dict())
            # MODEL_VERSION too when a decision overrides it: clearing the decision brings it back.
            outcome["protect"] = sorted({current, champion, pinned, job.pin} - {None})
            return verdict.promote

        try:
            version = publish(candidate, job.repository, accept)
        except modelrepo.Rejected:
            outcome["status"] = "rejected"
            return EXIT_REJECTED
    outcome.update(status="promoted", version=version)
    if job.keep is not None:
        _prune(job, {version, *outcome["protect"]}, outcome)
    return EXIT_PROMOTED


def _initial_weights(job: Job, board: Scoreboard, outcome: dict) -> TrainConfig:
    """The config with `served` resolved to the served version's model.onnx."""
    if job.config.init_from != SERVED:
        outcome["init_from"] = job.config.init_from
        return job.config
    served = board.current(pinned_version(job.repository, job.name, job.pin))
    if served is None:
        raise RuntimeError(f"--init-from {SERVED}: no servable version of {job.name} in {job.repository} (use --init-from none for a first model)")
    path = modelrepo.version_dir(job.repository, job.name, served) / modelrepo.MODEL_FILE
    outcome["init_from"] = {"version": served, "path": str(path)}
    return replace(job.config, init_from=str(path))


def _prune(job: Job, protect: set[int], outcome: dict) -> None:
    # The version is published and may already be served: a failed prune must not turn that
    # into a failed job, or the scheduler would report (and maybe retry) a success.
    try:
        outcome["pruned"] = modelrepo.prune(job.repository, job.name, job.keep, protect)
    except Exception as exc:  # noqa: BLE001
        log.warning("prune failed after promotion: %s", exc)
        outcome.setdefault("warnings", []).append(f"prune failed: {type(exc).__name__}: {exc}")
