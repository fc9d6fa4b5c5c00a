"""`python -m training {train,export,evaluate,quantize,retrain}`: the offline CLI and the retraining job."""
from __future__ import annotations

import argparse
import os
import sys
from dataclasses import fields
from pathlib import Path

from training.config import (
    MIN_ACCURACY,
    NONE,
    PRODUCTION_SHARE,
    QUANT_SCHEME,
    QUANT_SCHEMES,
    RETRAIN,
    RETRAIN_PRODUCTION,
    SERVED,
    SIGNIFICANCE,
    TrainConfig,
)
from training.data import DatasetError

# Only the standard library, training.config and training.data (numpy) are imported here
# (training.production's constants come in with retrain's options, numpy only):
# `--help`, `evaluate` and `quantize` never load TensorFlow, and the commands that train load
# it only after the dataset check, inside their function.


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _significance(text: str) -> float:
    value = float(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {value}")
    return value


def _weights(text: str) -> str:
    if text == SERVED:
        raise argparse.ArgumentTypeError(f"'{SERVED}' is for `retrain`: give `train` a .keras or model.onnx path")
    return text


def _share(text: str) -> float:
    value = float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1), got {value}")
    return value


def _add_train_options(parser: argparse.ArgumentParser, d: TrainConfig = TrainConfig(), alt: TrainConfig | None = None) -> None:
    """The hyperparameters; with `alt` (retrain), an option left out takes alt's value when the
    job learns from production images, d's otherwise."""
    def default(name: str) -> dict:
        if alt is None:
            return {"default": getattr(d, name)}
        ours, theirs = getattr(d, name), getattr(alt, name)
        return {"default": None, "help_default": f"{ours}" + (f"; {theirs} with production images" if theirs != ours else "")}

    def add(flag: str, help_text: str, **kwargs) -> None:
        name = flag[2:].replace("-", "_")
        values = default(name)
        shown = values.pop("help_default", "%(default)s")
        parser.add_argument(flag, **kwargs, **values, help=f"{help_text} (default {shown})")

    add("--epochs", "maximum epochs", type=int)
    add("--batch-size", "images per step", type=int)
    add("--learning-rate", "peak AdamW rate, cosine-decayed", type=float)
    add("--weight-decay", "AdamW's", type=float)
    add("--label-smoothing", "of the one-hot targets", type=float)
    add("--augment", "±2 px shifts and horizontal flips", action=argparse.BooleanOptionalAction)
    add("--patience", "early-stopping patience in epochs", type=int)
    add("--seed", "of shuffles, augmentation and initial weights", type=int)
    parser.add_argument("--limit", type=int, default=None, help="train on the first N images only (tests)")
    add("--ema-momentum", "keep an exponential moving average of the weights and export it (e.g. 0.999; 0 = off)", type=float)
    add("--production-share", "share of every batch taken by production images (oversampled)", type=_share)


def _config(args: argparse.Namespace, base: TrainConfig = TrainConfig()) -> TrainConfig:
    values = {f.name: getattr(args, f.name, None) for f in fields(TrainConfig)}
    values = {name: getattr(base, name) if value is None else value for name, value in values.items()}
    return TrainConfig(**values | {"init_from": None if args.init_from in (None, NONE) else args.init_from})


def cmd_train(args: argparse.Namespace) -> int:
    from training.data import load_data  # noqa: PLC0415

    data = load_data()  # fail on a missing dataset before paying for the TensorFlow import
    from training.train import save_run, train  # noqa: PLC0415

    result = train(data, _config(args), checkpoint_dir=args.run_dir)
    save_run(result, args.run_dir)
    print(f"trained {result.epochs_run} epochs (best {result.best_epoch}) in {result.seconds:.0f} s -> {args.run_dir}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    import tempfile  # noqa: PLC0415

    from training.data import load_data  # noqa: PLC0415
    from training.publish import prepare, publish  # noqa: PLC0415
    from training.runs import lineage, load_run  # noqa: PLC0415

    model, run = load_run(args.run_dir)
    run["commands"] = [*lineage(args.run_dir), f"python -m training export {args.run_dir} --repository {args.repository}"
                       + (f" --model-name {args.model_name}" if args.model_name != "fashion-mnist" else "")]
    with tempfile.TemporaryDirectory(prefix="candidate-") as staging:
        candidate = prepare(model, run, load_data(), args.model_name, Path(staging))
        version = publish(candidate, args.repository)
    print(f"published {args.model_name}/{version}: test accuracy {candidate.accuracy:.4f}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from training.data import load_data  # noqa: PLC0415
    from training.evaluate import evaluate_onnx  # noqa: PLC0415

    evaluation = evaluate_onnx(args.model, load_data().test)
    print(evaluation.model_dump_json(indent=2) if args.json else f"test accuracy {evaluation.test_accuracy:.4f} on {evaluation.test_images} images")
    return 0


def cmd_quantize(args: argparse.Namespace) -> int:
    from training.quantize import publish_quantized  # noqa: PLC0415

    published = publish_quantized(args.repository, args.source, args.version, args.name, args.calibration_images, args.scheme)
    if published is None:
        print(f"error: no valid version{f' {args.version}' if args.version else ''} of {args.source} in {args.repository}", file=sys.stderr)
        return 2
    version, int8, fp32 = published
    print(f"published {args.name}/{version}: test accuracy {int8:.4f} (fp32 {fp32:.4f})")
    return 0


def cmd_retrain(args: argparse.Namespace) -> int:
    from training.retrain import Job, retrain  # noqa: PLC0415

    config = _config(args, RETRAIN_PRODUCTION if args.store else RETRAIN)
    return retrain(Job(args.repository, args.model_name, config, args.min_accuracy, args.significance,
                       args.keep, args.pin, args.report, args.store or None, tuple(args.label_sources),
                       args.min_new_labels, args.holdout_fraction, args.min_holdout, args.drift_tolerance))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train the CNN and save the run (Keras model + history)")
    _add_train_options(p)
    p.add_argument("--init-from", type=_weights, default=None, metavar="WEIGHTS",
                   help="start from these weights instead of random ones: a run's model.keras or best.keras, or a published model.onnx")
    p.add_argument("--production", default=None, metavar="NPZ",
                   help="labelled production images to learn from as well: a version's report/production.npz "
                        "(its training part; the holdout is never trained on)")
    p.add_argument("--run-dir", type=Path, default=Path("runs/latest"), help="where the run is saved")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("export", help="export a trained run to ONNX (parity-gated), evaluate it and publish it")
    p.add_argument("run_dir", type=Path, help="a folder written by `train` (a stopped run: its best.keras)")
    _add_repository_options(p)
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("evaluate", help="evaluate an ONNX model on the 10,000 test images")
    p.add_argument("model", type=Path, help="path to a model.onnx")
    p.add_argument("--json", action="store_true", help="print the full evaluation as JSON")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("quantize", help="publish a static int8 (QDQ) copy of a published model")
    p.add_argument("--repository", type=Path, default=Path("models"), help="default %(default)s")
    p.add_argument("--source", default="fashion-mnist", help="model to quantize (default %(default)s)")
    p.add_argument("--version", type=_positive_int, default=None, help="its version (default: the newest valid one)")
    p.add_argument("--name", default="fashion-mnist-int8", help="name to publish under (default %(default)s)")
    p.add_argument("--calibration-images", type=int, default=3000, help="training images used for calibration")
    p.add_argument("--scheme", choices=QUANT_SCHEMES, default=QUANT_SCHEME,
                   help="activation and weight types (default %(default)s: the same predictions on every CPU)")
    p.set_defaults(func=cmd_quantize)

    p = sub.add_parser("retrain", help="train, export, evaluate, gate and publish (the retraining job)",
                       description="Exit codes: 0 promoted, 2 dataset missing or unreadable, 3 rejected, 4 failed, "
                                   "5 nothing to do (too few new labelled images, or too few for a holdout), "
                                   "6 capture store unreachable.")
    _add_train_options(p, RETRAIN, RETRAIN_PRODUCTION)
    p.add_argument("--init-from", default=RETRAIN.init_from, metavar="WEIGHTS",
                   help=f"'{SERVED}' (default: the version the service serves), a .keras or model.onnx path, or '{NONE}'")
    _add_repository_options(p)
    p.add_argument("--min-accuracy", type=float, default=MIN_ACCURACY, help="absolute floor (default %(default)s)")
    p.add_argument("--significance", type=_significance, default=SIGNIFICANCE,
                   help="reject when McNemar's one-sided exact test says the candidate is worse than the served "
                        "or the best version at this level (default %(default)s; 0 never rejects on it)")
    # Defaults from the servers' own variables, so the CronJob and the compose trainer pass
    # them through; argparse checks a string default like a command-line value.
    p.add_argument("--pin", type=_positive_int, default=os.environ.get("MODEL_VERSION") or None,
                   help="the servers' pinned version (default: $MODEL_VERSION; an operator's decision in the repository wins)")
    p.add_argument("--keep", type=_positive_int, default=None, help="after promotion, keep only the newest N versions (N ≥ 1)")
    p.add_argument("--report", type=Path, default=None, help="JSON report path (default <repository>/<model>/.reports/)")
    _add_production_options(p)
    p.set_defaults(func=cmd_retrain)
    return parser


def _add_production_options(parser: argparse.ArgumentParser) -> None:
    from training import production as prod  # noqa: PLC0415  (numpy only)
    from training.gate import DRIFT_TOLERANCE  # noqa: PLC0415  (numpy only)

    parser.add_argument("--store", default=os.environ.get("CAPTURE_URL") or None, metavar="URL",
                        help="the capture store to learn from, the service's (default: $CAPTURE_URL; "
                             "without one, Fashion-MNIST alone)")
    parser.add_argument("--label-sources", nargs="+", choices=("token", "public"), default=list(prod.DEFAULT_SOURCES),
                        help="whose labels to learn from (default: token only; public labels may be poisoned)")
    parser.add_argument("--min-new-labels", type=int, default=prod.MIN_NEW_LABELS,
                        help="exit 5 (nothing to do) when fewer images were labelled since the served version was trained "
                             "(default %(default)s)")
    parser.add_argument("--holdout-fraction", type=_share, default=prod.HOLDOUT_FRACTION,
                        help="newest share of the labelled images held out for the gate (default %(default)s)")
    parser.add_argument("--min-holdout", type=_positive_int, default=prod.MIN_HOLDOUT,
                        help="at least this many held out; fewer labelled images is nothing to do (default %(default)s)")
    parser.add_argument("--drift-tolerance", type=float, default=DRIFT_TOLERANCE,
                        help="production has drifted when the served model's holdout accuracy is significantly below its "
                             "clean accuracy minus this (default %(default)s)")


def _add_repository_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--repository", type=Path, default=Path("models"), help="model repository (default %(default)s)")
    parser.add_argument("--model-name", default="fashion-mnist", help="default %(default)s")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except DatasetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
