"""The retraining job: train a candidate from the served weights, export and evaluate it, and
promote it only if the gate (training/gate.py) finds it no worse than what it would replace.

Given a capture store (`--store`, default $CAPTURE_URL), it first counts the images labelled
since the served version was trained; below `--min-new-labels` it stops there, in about a
second and without importing TensorFlow. Otherwise it reads them (training/production.py):
the newest part is the production holdout the gate tests on, the rest join the training
images, and an .npz copy of exactly those images and labels goes into the new version's
report/ folder, so that its Reproduce commands need no database.

Exit codes: 0 promoted (a failed prune afterwards is only a warning), 2 dataset missing or
unreadable, 3 rejected, 4 failed, 5 nothing to do (too few new labels, or too few for a
holdout), 6 capture store unreachable. Every run leaves a JSON report, whatever happened.
"""
from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

import modelrepo
from training import production as prod
from training.config import MIN_ACCURACY, SERVED, SIGNIFICANCE, TrainConfig, command_line
from training.data import DatasetError, load_data
from training.gate import DRIFT_TOLERANCE, Holdout, decide
from training.publish import prepare, publish
from training.runs import parent_commands
from training.scoreboard import Scoreboard, pinned_version

EXIT_PROMOTED = 0
EXIT_DATASET = 2
EXIT_REJECTED = 3
EXIT_FAILED = 4
EXIT_NOTHING_TO_DO = 5
EXIT_STORE = 6
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
    store: str | None = None  # the capture store's URL; None: Fashion-MNIST alone, as before
    sources: tuple[str, ...] = prod.DEFAULT_SOURCES
    min_new_labels: int = prod.MIN_NEW_LABELS
    holdout_fraction: float = prod.HOLDOUT_FRACTION
    min_holdout: int = prod.MIN_HOLDOUT
    drift_tolerance: float = DRIFT_TOLERANCE


def retrain(job: Job) -> int:
    """Run the whole job; returns the process exit code and writes a JSON report."""
    outcome: dict = {"model": job.name, "started": datetime.now(timezone.utc).isoformat(), "config": asdict(job.config)}
    try:
        code = _run(job, outcome)
    except DatasetError as exc:
        outcome.update(status="dataset missing", error=str(exc))
        code = EXIT_DATASET
    except prod.NothingToDo as exc:
        outcome.update(status="nothing to do", reason=str(exc))
        code = EXIT_NOTHING_TO_DO
    except prod.StoreUnavailable as exc:
        outcome.update(status="store unavailable", error=str(exc))
        code = EXIT_STORE
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
    production = _production(job, outcome) if job.store else None  # before TensorFlow: maybe nothing to do
    data = load_data()
    from training.train import summary, train  # noqa: PLC0415  (TensorFlow, once the dataset is there)

    board = Scoreboard(job.repository, job.name, data.test)
    config = _initial_weights(job, board, outcome)
    result = train(data, config, production=production.train if production else None)
    outcome["training_seconds"] = round(result.seconds, 1)  # the schedule's budget is 30 minutes on 2 cores
    run = summary(result) | {"commands": _commands(job, config, None)}
    with tempfile.TemporaryDirectory(prefix="candidate-") as staging:
        holdout = None
        if production is not None:
            prod.save(production, Path(staging) / modelrepo.REPORT_DIR / prod.COPY_NAME)
            run["production"] = production.describe(copy=f"{modelrepo.REPORT_DIR}/{prod.COPY_NAME} (in this version's folder)")
            holdout = Scoreboard(job.repository, job.name, production.holdout)  # the same scores, on the holdout
        candidate = prepare(result.model, run, data, job.name, Path(staging))
        correct = board.correct_file(Path(staging) / modelrepo.MODEL_FILE)
        held_candidate = None if holdout is None else holdout.correct_file(Path(staging) / modelrepo.MODEL_FILE)
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
            held = None
            if holdout is not None and current is not None:
                held = Holdout(held_candidate, holdout.correct(current), job.drift_tolerance)
            verdict = decide(correct, references, job.min_accuracy, job.significance, held)
            outcome.update(pinned=pinned, current_version=current, current_accuracy=board.accuracy(current),
                           champion_version=champion, champion_accuracy=board.accuracy(champion),
                           not_servable={str(v): why for v, why in board.skipped.items()},
                           decision="promote" if verdict.promote else "reject", reason=verdict.reason, gate=verdict.as_dict())
            # MODEL_VERSION too when a decision overrides it: clearing the decision brings it back.
            outcome["protect"] = sorted({current, champion, pinned, job.pin} - {None})
            if verdict.promote:
                # Under the lock publish allocates under: the version is the next number.
                _describe_gate(job, candidate, config, verdict, (modelrepo.newest_version(job.repository, job.name) or 0) + 1,
                               production is not None)
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


def _production(job: Job, outcome: dict) -> prod.Production:
    """The labelled production images, or NothingToDo when too few are new (no TensorFlow here)."""
    served = modelrepo.served_version(job.repository, job.name, pinned_version(job.repository, job.name, job.pin))
    since = 0.0
    if served is not None:
        # Labels the served version learned from are not new; without production data, the ones
        # given before it was created are (it never saw them).
        used = served[1].training.get("production") or {}
        since = float(used.get("labelled_until", served[1].created.timestamp()))
    new = prod.new_labels(job.store, job.name, since, job.sources)
    outcome["production"] = {"sources": list(job.sources), "served_version": served and served[0],
                             "new_labels_since": datetime.fromtimestamp(since, timezone.utc).isoformat(), "new_labels": new}
    if new < job.min_new_labels:
        raise prod.NothingToDo(f"{new} images of {job.name} labelled ({'/'.join(job.sources)}) since "
                               f"{outcome['production']['new_labels_since']}, fewer than --min-new-labels {job.min_new_labels}")
    production = prod.read(job.store, job.name, job.sources, job.holdout_fraction, job.min_holdout)
    outcome["production"].update(production.describe(copy=""))
    return production


def _commands(job: Job, config: TrainConfig, copy: Path | None) -> list[str]:
    """The card's Reproduce commands; with production data, the train command reads the version's copy."""
    config = replace(config, production=str(copy)) if copy else config
    return [*parent_commands(config.init_from), command_line(config, RUN_DIR),
            f"python -m training export {RUN_DIR} --repository {job.repository}"]


def _describe_gate(job: Job, candidate, config: TrainConfig, verdict, version: int, with_production: bool) -> None:
    """Both comparisons and the final Reproduce commands into the card (metadata and README)."""
    from training.report import model_card  # noqa: PLC0415

    training = candidate.metadata.training
    training["gate"] = verdict.as_dict()
    if with_production:
        copy = modelrepo.version_dir(job.repository, job.name, version) / modelrepo.REPORT_DIR / prod.COPY_NAME
        training["commands"] = _commands(job, config, copy)
        training["production"]["copy"] = str(copy)
    card = candidate.staging / modelrepo.REPORT_DIR / "README.md"
    card.write_text(model_card(candidate.metadata, curves=(card.parent / "training_curves.png").exists()))


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
