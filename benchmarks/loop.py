"""python -m benchmarks.loop: the loop closed end to end, as one command, with one table.

1. The real service (capture on, SQLite store, a feedback token) on a copy of the shipped models,
   scraped every 5 s by a real Prometheus that evaluates the model-quality alert expressions of
   deploy/prometheus/alerts.yml (their `expr`; the `for:` durations, 15 min to 1 h, are an
   alert's patience, not its condition, so the table shows when each expression turned true).
2. Unshifted traffic: clean Fashion-MNIST training images as v1 PNGs, a share labelled through
   /v1/feedback with the token. The alert expressions must stay false.
3. Shifted traffic (benchmarks/shift.py: tilt, blur, a lamp on one side) from other training
   images, labelled likewise, until the labels reach --labels and a drift expression is true.
4. The retraining job, exactly as the CronJob runs it (`python -m training retrain --store …`,
   its defaults), then the wait until every worker serves the new version.
5. The served model before and after, measured with onnxruntime on their model.onnx files: on a
   held-out shifted set (the validation split, shifted with another seed: no model trains on it,
   and neither the stream nor the store holds any of it) and on the clean test set (with the
   paired McNemar test of training/gate.py).
The images the model was tested on (the test split) are never in the stream; its training
images are, shifted, as the new photographs of known articles a camera would take.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import requests
import yaml
from PIL import Image

from benchmarks.shift import shift
from tests.harness import ROOT, start_server
from tests.prometheus import prometheus
from training.data import load_data
from training.evaluate import predict_onnx
from training.gate import mcnemar_worse_p

NAME = "fashion-mnist"
TOKEN = "loop-feedback-token"
ALERTS = ("ModelClassMixDrift", "ModelConfidenceDrop", "ModelLiveAccuracyLow")
LABEL_LAG_S = 2.0  # a capture is written within the writer's 0.5 s batch plus an INSERT
ALERT_DEADLINE_S = 600  # the target: a drift expression true within 10 minutes of the shift
CLEAN_TARGET, SHIFT_GAIN_TARGET = 0.915, 0.10
# The drift signals themselves (the left-hand sides of the alert expressions), for the table.
SIGNALS = {
    "class mix TV": '0.5 * sum by (model, version) (abs(sum by (model, version, class) (increase(serving_predictions_total[1h])) '
                    '/ on (model, version) group_left sum by (model, version) (increase(serving_predictions_total[1h])) '
                    '- on (model, version, class) max by (model, version, class) (serving_reference_class_share)))',
    "confidence": 'sum by (model, version) (increase(serving_prediction_confidence_sum[1h])) '
                  '/ sum by (model, version) (increase(serving_prediction_confidence_count[1h]))',
    "live accuracy": 'sum by (model, version) (increase(serving_feedback_total{outcome="right"}[1d])) '
                     '/ sum by (model, version) (increase(serving_feedback_total[1d]))',
}


def _png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image, "L").save(buffer, format="PNG")
    return buffer.getvalue()


class Traffic:
    """Classify images at a steady rate and label a share of them (with the token) once captured."""

    def __init__(self, url: str, rate: float, label_share: float, max_labels: int):
        self.url, self.rate, self.label_share, self.max_labels = url, rate, label_share, max_labels
        self.session = requests.Session()
        self.sent = self.labelled = self.errors = 0
        self.pending: list[tuple[float, str, int]] = []

    def send(self, images: np.ndarray, labels: np.ndarray, rng: np.random.Generator, until) -> int:
        """Send images in order until they run out or until() is true; returns how many were sent."""
        started = time.monotonic()
        for n, (image, label) in enumerate(zip(images, labels)):
            if until():
                return n
            time.sleep(max(0.0, started + n / self.rate - time.monotonic()))
            response = self.session.post(f"{self.url}/v1/classify", data=_png(image), headers={"Content-Type": "image/png"}, timeout=30)
            self.sent += 1
            if response.status_code != 200:
                self.errors += 1
                continue
            if rng.random() < self.label_share:
                self.pending.append((time.monotonic(), response.json()["request_id"], int(label)))
            self.flush(time.monotonic() - LABEL_LAG_S)
        return len(images)

    def flush(self, before: float) -> None:
        """Label the images classified before `before` (a 404 is retried once, later: not yet written)."""
        keep = []
        for at, request_id, label in self.pending:
            if self.labelled >= self.max_labels:
                continue
            if at > before:
                keep.append((at, request_id, label))
                continue
            answer = self.session.post(f"{self.url}/v1/feedback", json={"id": request_id, "class_id": label},
                                       headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
            if answer.status_code == 200:
                self.labelled += 1
            elif answer.status_code == 404 and at > before - 10:
                keep.append((at, request_id, label))
            else:
                self.errors += 1
        self.pending = keep


class Watch:
    """Every 5 s: which alert expressions are true, and the drift signals, from Prometheus."""

    def __init__(self, prom: str):
        rules = yaml.safe_load((ROOT / "deploy/prometheus/alerts.yml").read_text())
        exprs = {r["alert"]: r["expr"] for g in rules["groups"] for r in g["rules"] if r.get("alert") in ALERTS}
        self.prom, self.exprs = prom, exprs
        self.first_true: dict[str, float] = {}
        self.true_before_shift: set[str] = set()
        self.shifted_at: float | None = None
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def query(self, promql: str) -> list[dict]:
        return requests.get(f"{self.prom}/api/v1/query", params={"query": promql}, timeout=10).json()["data"]["result"]

    def _run(self) -> None:
        while not self.stop.wait(5):
            for alert, expr in self.exprs.items():
                try:
                    true = bool(self.query(expr))
                except (requests.RequestException, KeyError, ValueError) as exc:
                    print(f"prometheus query failed: {exc}", file=sys.stderr)
                    continue
                if true:
                    if self.shifted_at is None:
                        self.true_before_shift.add(alert)
                    else:
                        self.first_true.setdefault(alert, time.monotonic())

    def signals(self) -> str:
        parts = []
        for name, promql in SIGNALS.items():
            values = [f"v{r['metric'].get('version')} {float(r['value'][1]):.3f}" for r in self.query(promql)
                      if r["value"][1] not in ("NaN", "+Inf", "-Inf")]  # a version without traffic: 0/0
            parts.append(f"{name} {', '.join(values) or '–'}")
        return "; ".join(parts)


def accuracy(model: Path, images: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Which images the model gets right (onnxruntime, the service's input: uint8 / 255)."""
    return predict_onnx(model, (images / np.float32(255))[..., None]).argmax(1) == labels


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.loop", description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=20, help="images a second sent (default %(default)s)")
    parser.add_argument("--clean-images", type=int, default=1200, help="unshifted images before the shift (default %(default)s)")
    parser.add_argument("--labels", type=int, default=2000, help="labels to give in all (default %(default)s)")
    parser.add_argument("--clean-label-share", type=float, default=0.1, help="share of unshifted images labelled (default %(default)s)")
    parser.add_argument("--label-share", type=float, default=0.5, help="share of shifted images labelled (default %(default)s)")
    parser.add_argument("--retrain-args", default="", help="extra options for the job (default: none, the CronJob's)")
    parser.add_argument("--keep", type=Path, default=None, help="keep the run's folder here (default: a temporary one)")
    args = parser.parse_args(argv)

    data = load_data()
    to_uint8 = lambda split: (split.images[..., 0] * 255).round().astype(np.uint8)  # noqa: E731
    train, train_labels = to_uint8(data.train), data.train.labels
    clean_stream = slice(0, args.clean_images)
    shifted_stream = slice(args.clean_images, len(train))
    heldout = shift(to_uint8(data.validation), seed=2)
    rng = np.random.default_rng(0)
    rows: list[tuple[str, float, str]] = []

    with tempfile.TemporaryDirectory(prefix="loop-") as name:
        tmp = args.keep or Path(name)
        tmp.mkdir(parents=True, exist_ok=True)
        repo, store_url = tmp / "models", f"sqlite:///{tmp / 'captures.db'}"
        shutil.rmtree(repo, ignore_errors=True)
        shutil.copytree(ROOT / "models", repo, ignore=shutil.ignore_patterns(".lock", ".reports"))
        started = time.monotonic()
        server = start_server(repo, tmp, CAPTURE_URL=store_url, FEEDBACK_TOKEN=TOKEN, RELOAD_POLL_SECONDS="2",
                              LOG_LEVEL="warning", WEB_CONCURRENCY="2")
        try:
            with prometheus(tmp, [server.url.removeprefix("http://")],
                            {"global": {"scrape_interval": "5s", "evaluation_interval": "5s"}}) as prom:
                watch = Watch(prom)
                rows.append(("start: service (capture on) + Prometheus", time.monotonic() - started, f"served v1"))

                traffic = Traffic(server.url, args.rate, args.clean_label_share, args.labels)
                t = time.monotonic()
                traffic.send(train[clean_stream], train_labels[clean_stream], rng, lambda: False)
                time.sleep(LABEL_LAG_S)
                traffic.flush(time.monotonic())
                time.sleep(10)  # two of the watch's evaluations after the last clean image
                rows.append(("unshifted traffic", time.monotonic() - t,
                             f"{traffic.sent} images, {traffic.labelled} labelled; alert expressions true: "
                             f"{sorted(watch.true_before_shift) or 'none'}; {watch.signals()}"))

                stream = shift(train[shifted_stream][:20_000], seed=1)
                traffic.label_share = args.label_share
                t = watch.shifted_at = time.monotonic()
                sent_before = traffic.sent
                done = lambda: traffic.labelled >= args.labels and (watch.first_true or time.monotonic() - t > ALERT_DEADLINE_S)  # noqa: E731
                traffic.send(stream, train_labels[shifted_stream][:20_000], rng, done)
                traffic.flush(time.monotonic() + 1)
                when = {a: f"{at - t:.0f} s" for a, at in sorted(watch.first_true.items(), key=lambda kv: kv[1])}
                rows.append(("shifted traffic", time.monotonic() - t,
                             f"{traffic.sent - sent_before} images, {traffic.labelled} labelled in all ({traffic.errors} errors); "
                             f"true after the shift: {when or 'none'}; {watch.signals()}"))

                t = time.monotonic()
                report = tmp / "retrain.json"
                job = subprocess.run([sys.executable, "-m", "training", "retrain", "--repository", str(repo), "--store", store_url,
                                      "--report", str(report), *args.retrain_args.split()],
                                     cwd=ROOT, capture_output=True, text=True, env={k: v for k, v in os.environ.items() if k != "MODEL_VERSION"})
                (tmp / "retrain.log").write_text(job.stdout + job.stderr)
                outcome = json.loads(report.read_text())
                rows.append(("retraining job", time.monotonic() - t,
                             f"exit {job.returncode}, {outcome['status']}; of which training {outcome.get('training_seconds', '?')} s; "
                             f"{outcome.get('reason', outcome.get('error', ''))}"))
                if job.returncode != 0:
                    print(job.stdout[-3000:], job.stderr[-3000:], file=sys.stderr)
                    return _finish(rows, 1)

                t = time.monotonic()
                version = str(outcome["version"])
                streak = 0
                while streak < 10 and time.monotonic() - t < 120:
                    answer = traffic.session.post(f"{server.url}/v1/classify", data=_png(heldout[0]), headers={"Content-Type": "image/png"}, timeout=30)
                    streak = streak + 1 if answer.json().get("model_version") == version else 0
                rows.append(("hot swap", time.monotonic() - t, f"every worker serves v{version}" if streak >= 10 else "NOT SWAPPED in 120 s"))
                watch.stop.set()

                t = time.monotonic()
                before, after = (repo / NAME / v / "model.onnx" for v in ("1", version))
                shifted = [accuracy(m, heldout, data.validation.labels) for m in (before, after)]
                clean = [accuracy(m, to_uint8(data.test), data.test.labels) for m in (before, after)]
                p = mcnemar_worse_p(int(np.sum(clean[1] & ~clean[0])), int(np.sum(clean[0] & ~clean[1])))
                gain = shifted[1].mean() - shifted[0].mean()
                met = gain >= SHIFT_GAIN_TARGET and clean[1].mean() >= CLEAN_TARGET and p >= 0.05
                rows.append(("measure before/after", time.monotonic() - t,
                             f"held-out shifted ({len(heldout):,}): {shifted[0].mean():.2%} → {shifted[1].mean():.2%} ({gain * 100:+.1f} points); "
                             f"clean test: {clean[0].mean():.2%} → {clean[1].mean():.2%} (worse: McNemar p = {p:.3g}); "
                             f"targets {'met' if met and watch.first_true and not watch.true_before_shift else 'NOT met'}"))
        finally:
            server.stop()
        rows.append(("total", time.monotonic() - started, ""))
    return _finish(rows, 0)


def _finish(rows: list[tuple[str, float, str]], code: int) -> int:
    """Print the one table; the exit code says whether the job ran (the targets are figures, not a test)."""
    lines = ["| phase | wall time | what happened |", "|---|---:|---|"]
    lines += [f"| {phase} | {seconds:.0f} s | {what} |" for phase, seconds, what in rows]
    print("\n".join(lines), flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
