"""`python -m training {train,export,evaluate,retrain}`: the offline CLI and the retraining job."""
from __future__ import annotations

import argparse
import sys
from dataclasses import fields
from pathlib import Path

from training.data import DatasetError

def _add_train_options(parser: argparse.ArgumentParser) -> None:
    from training.train import TrainConfig  # noqa: PLC0415  (keeps `--help` free of TensorFlow)

    d = TrainConfig()
    parser.add_argument("--epochs", type=int, default=d.epochs, help="maximum epochs (default %(default)s)")
    parser.add_argument("--batch-size", type=int, default=d.batch_size, help="default %(default)s")
    parser.add_argument("--learning-rate", type=float, default=d.learning_rate, help="peak AdamW rate, cosine-decayed")
    parser.add_argument("--weight-decay", type=float, default=d.weight_decay, help="default %(default)s")
    parser.add_argument("--label-smoothing", type=float, default=d.label_smoothing, help="default %(default)s")
    parser.add_argument("--augment", action=argparse.BooleanOptionalAction, default=d.augment,
                        help="±2 px shifts and horizontal flips (default on)")
    parser.add_argument("--patience", type=int, default=d.patience, help="early-stopping patience in epochs")
    parser.add_argument("--seed", type=int, default=d.seed, help="default %(default)s")
    parser.add_argument("--limit", type=int, default=None, help="train on the first N images only (tests)")
    parser.add_argument("--ema-momentum", type=float, default=d.ema_momentum,
                        help="keep an exponential moving average of the weights and export it (e.g. 0.999; 0 = off)")
    parser.add_argument("--init-from", default=None, metavar="MODEL_KERAS",
                        help="start from these weights (a run's model.keras or best.keras) instead of random ones")


def _config(args: argparse.Namespace):
    from training.train import TrainConfig  # noqa: PLC0415

    return TrainConfig(**{f.name: getattr(args, f.name) for f in fields(TrainConfig)})


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
    from training.publish import load_run, prepare, publish  # noqa: PLC0415
    from training.train import lineage  # noqa: PLC0415

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
    import tempfile  # noqa: PLC0415

    import modelrepo  # noqa: PLC0415
    from training.data import load_data  # noqa: PLC0415
    from training.evaluate import evaluate_onnx  # noqa: PLC0415
    from training.publish import Candidate, base_metadata, publish  # noqa: PLC0415
    from training.quantize import quantize  # noqa: PLC0415
    from training.report import write_report  # noqa: PLC0415

    version = args.version or modelrepo.newest_version(args.repository, args.source)
    if version is None:
        print(f"error: no published version of {args.source} in {args.repository}", file=sys.stderr)
        return 2
    source = modelrepo.version_dir(args.repository, args.source, version)
    source_meta = modelrepo.verify(args.repository, args.source, version)
    data = load_data()
    with tempfile.TemporaryDirectory(prefix="candidate-") as staging:
        int8 = Path(staging) / modelrepo.MODEL_FILE
        quantize(source / modelrepo.MODEL_FILE, int8, data.train.images[: args.calibration_images])
        evaluation = evaluate_onnx(int8, data.test)
        training = {"quantized_from": f"{args.source}/{version}", "method": "onnxruntime static QDQ, U8 activations (percentile calibration), S8 per-channel weights",
                    "calibration_images": f"first {args.calibration_images} training images", "source_test_accuracy": source_meta.test_accuracy}
        metadata = base_metadata(args.name, evaluation, training, sha256=modelrepo.sha256_file(int8),
                                 description=f"int8 (QDQ) quantization of {args.source}/{version}.")
        write_report(metadata, None, Path(staging) / "report")
        published = publish(Candidate(Path(staging), metadata, None), args.repository)
    print(f"published {args.name}/{published}: test accuracy {evaluation.test_accuracy:.4f} (fp32 {source_meta.test_accuracy:.4f})")
    return 0


def cmd_retrain(args: argparse.Namespace) -> int:
    from training.retrain import Gate, retrain  # noqa: PLC0415

    gate = Gate(min_accuracy=args.min_accuracy, max_regression=args.max_regression)
    return retrain(args.repository, args.model_name, _config(args), gate, args.keep, args.report)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train the CNN and save the run (Keras model + history)")
    _add_train_options(p)
    p.add_argument("--run-dir", type=Path, default=Path("runs/latest"), help="where the run is saved")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("export", help="export a trained run to ONNX (parity-gated), evaluate it and publish it")
    p.add_argument("run_dir", type=Path, help="a folder written by `train`")
    _add_repository_options(p)
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("evaluate", help="evaluate an ONNX model on the 10,000 test images")
    p.add_argument("model", type=Path, help="path to a model.onnx")
    p.add_argument("--json", action="store_true", help="print the full evaluation as JSON")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("quantize", help="publish a static int8 (QDQ) copy of a published model")
    p.add_argument("--repository", type=Path, default=Path("models"), help="default %(default)s")
    p.add_argument("--source", default="fashion-mnist", help="model to quantize (default %(default)s)")
    p.add_argument("--version", type=int, default=None, help="its version (default: newest)")
    p.add_argument("--name", default="fashion-mnist-int8", help="name to publish under (default %(default)s)")
    p.add_argument("--calibration-images", type=int, default=3000, help="training images used for calibration")
    p.set_defaults(func=cmd_quantize)

    p = sub.add_parser("retrain", help="train, export, evaluate, gate and publish (the retraining job)")
    _add_train_options(p)
    _add_repository_options(p)
    p.add_argument("--min-accuracy", type=float, default=0.90, help="absolute floor (default %(default)s)")
    p.add_argument("--max-regression", type=float, default=0.005, help="allowed drop below the current version (default %(default)s)")
    p.add_argument("--keep", type=int, default=None, help="after promotion, keep only the newest N versions")
    p.add_argument("--report", type=Path, default=None, help="JSON report path (default <repository>/<model>/.reports/)")
    p.set_defaults(func=cmd_retrain)
    return parser


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
