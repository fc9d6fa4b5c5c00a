"""The soak's capture side: the store the service writes, feedback calls, the store's size over the run,
an optional outage of the store, and at the end the drops and the drift the alerts would see."""
from __future__ import annotations

import io
import re
import threading
import time
from pathlib import Path

import numpy as np
import requests
from PIL import Image

import store
from training.data import load_data

FEEDBACK_TOKEN = "soak-feedback"
FEEDBACK_EVERY, SIZE_EVERY = 0.5, 5.0
# Feedback goes to the image classified this many rounds before (2 s): a capture is written within
# FLUSH_SECONDS plus an INSERT, which under this load took over 0.5 s 13 times in 10 minutes.
FEEDBACK_LAG = 4
# The alerts' thresholds (deploy/prometheus/alerts.yml), applied to the whole run.
MAX_TOTAL_VARIATION, MAX_CONFIDENCE_DROP = 0.15, 0.1
SAMPLE = re.compile(r'^(\w+)\{([^}]*)\} (\S+)$')


class CaptureSoak:
    """Capture on (SQLite or a throwaway PostgreSQL) or off, and what the soak does and checks about it."""

    def __init__(self, capture: bool, kind: str, tmp: Path, max_rows: int, prune_seconds: float):
        self.capture, self.kind, self.max_rows, self.prune_seconds = capture, kind, max_rows, prune_seconds
        self.postgres = None
        if kind == "postgresql":
            from tests.postgres import Postgres  # noqa: PLC0415 (a throwaway server, as in the tests)

            self.postgres = Postgres()
            self.url = self.postgres.database()
        else:
            self.url = f"sqlite:///{tmp / 'soak-captures.db'}"
        self.engine = store.connect(self.url) if capture else None
        self.sizes: list[int] = []
        self.outage: tuple[float, float] | None = None  # (start, end) monotonic, once it happened
        self.test = load_data().test

    def env(self) -> dict[str, str]:
        """The service's capture and feedback variables."""
        return {"CAPTURE_ENABLED": "1" if self.capture else "0", "CAPTURE_URL": self.url, "FEEDBACK_TOKEN": FEEDBACK_TOKEN,
                "CAPTURE_MAX_ROWS": str(self.max_rows), "CAPTURE_PRUNE_SECONDS": str(self.prune_seconds)}

    def threads(self, url: str, until: float, tally, stop_store_at: float | None, outage_seconds: float) -> list[threading.Thread]:
        """Feedback on fresh classifications, the store's size, and the outage if asked for."""
        if not self.capture:
            return []
        threads = [threading.Thread(target=self._feedback, args=(url, until, tally), daemon=True),
                   threading.Thread(target=self._sizes, args=(until,), daemon=True)]
        if stop_store_at is not None and self.postgres is not None:
            threads.append(threading.Thread(target=self._outage, args=(stop_store_at, outage_seconds), daemon=True))
        return threads

    def _in_outage(self, grace: float = 3.0) -> bool:
        if self.outage is None:
            return False
        start, end = self.outage
        return start <= time.monotonic() <= (end or float("inf")) + grace

    def _feedback(self, url: str, until: float, tally) -> None:
        """Classify a test image, then give the true label of the one classified FEEDBACK_LAG rounds before."""
        auth, waiting, n = {"Authorization": f"Bearer {FEEDBACK_TOKEN}"}, [], 0
        with requests.Session() as session:
            while time.monotonic() + FEEDBACK_EVERY < until:
                time.sleep(FEEDBACK_EVERY)
                k = (n * 7919) % len(self.test)  # a stride through the whole split
                n += 1
                started = time.monotonic()
                try:
                    response = session.post(f"{url}/v1/classify", data=_png(self.test.images[k]), timeout=30,
                                            headers={"Content-Type": "image/png"})
                    tally.record("v1 png (feedback source)", time.monotonic() - started, response.status_code == 200,
                                 f"HTTP {response.status_code}")
                    waiting.append((response.json()["request_id"], int(self.test.labels[k])))
                    if len(waiting) > FEEDBACK_LAG:
                        previous = waiting.pop(0)
                        started = time.monotonic()
                        answer = session.post(f"{url}/v1/feedback", json={"id": previous[0], "class_id": previous[1]},
                                              headers=auth, timeout=30)
                        outage = self._in_outage()
                        ok = answer.status_code == 200 or (outage and answer.status_code in (404, 503))
                        kind = "feedback (store down)" if outage else "feedback"
                        tally.record(kind, time.monotonic() - started, ok, f"HTTP {answer.status_code} {answer.text[:80]}")
                except requests.RequestException as exc:
                    tally.record("feedback", time.monotonic() - started, False, type(exc).__name__)

    def _sizes(self, until: float) -> None:
        while time.monotonic() + SIZE_EVERY < until:
            time.sleep(SIZE_EVERY)
            try:
                self.sizes.append(store.count(self.engine))
            except Exception:  # the store is down (the outage): no reading this time
                pass

    def _outage(self, at: float, seconds: float) -> None:
        time.sleep(at)
        self.outage = (time.monotonic(), 0.0)
        self.postgres.stop()
        time.sleep(seconds)
        self.postgres.start()
        self.outage = (self.outage[0], time.monotonic())

    def summary(self, url: str, workers: int) -> tuple[list[str], bool]:
        """Report lines, and whether every capture check held (bounded store, silent drift rules)."""
        samples = _scrape(url)
        lines, ok = [], True
        written, pruned = _sum(samples, "serving_captures_written_total"), _sum(samples, "serving_capture_pruned_total")
        drops = {labels["reason"]: value for labels, value in samples.get("serving_capture_dropped_total", [])}
        lines.append(f"capture: {'on, ' + self.kind if self.capture else 'off'}; written {written:.0f}, pruned {pruned:.0f}, "
                     f"dropped {drops}")
        if self.capture:
            # Between two prunes each worker adds what it wrote in one period: the bound the store keeps to.
            rate = written / max(1.0, self.elapsed)
            bound = self.max_rows + workers * rate * (self.prune_seconds + 1)
            largest = max(self.sizes, default=0)
            lines.append(f"store rows: largest of {len(self.sizes)} readings {largest}, CAPTURE_MAX_ROWS {self.max_rows} "
                         f"(+ one prune period's writes: bound {bound:.0f})")
            ok &= largest <= bound
            if self.outage:
                lines.append(f"store outage: {self.outage[1] - self.outage[0]:.0f} s; store_error drops {drops.get('store_error', 0):.0f}")
                ok &= drops.get("store_error", 0) > 0
        right, wrong = (sum(v for labels, v in samples.get("serving_feedback_total", []) if labels["outcome"] == o)
                        for o in ("right", "wrong"))
        if right + wrong:
            lines.append(f"feedback: {right + wrong:.0f} labels, live accuracy {right / (right + wrong):.1%}")
        distance, confidence, reference = _drift(samples)
        silent = distance <= MAX_TOTAL_VARIATION and confidence >= reference - MAX_CONFIDENCE_DROP
        lines.append(f"drift over the run: class mix total variation {distance:.3f} (alert > {MAX_TOTAL_VARIATION}), "
                     f"mean confidence {confidence:.3f} vs reference {reference:.3f} (alert < reference - {MAX_CONFIDENCE_DROP}): "
                     f"{'silent' if silent else 'WOULD FIRE'}")
        return lines, ok and silent

    def close(self) -> None:
        if self.engine is not None:
            self.engine.dispose()
        if self.postgres is not None:
            self.postgres.close()


def _png(image: np.ndarray) -> bytes:
    """A test image (float [28, 28, 1] in [0, 1]) as the PNG a client would send."""
    buffer = io.BytesIO()
    Image.fromarray(np.round(image[..., 0] * 255).astype(np.uint8), "L").save(buffer, format="PNG")
    return buffer.getvalue()


def _scrape(url: str) -> dict[str, list[tuple[dict, float]]]:
    samples: dict[str, list[tuple[dict, float]]] = {}
    for line in requests.get(f"{url}/metrics", timeout=30).text.splitlines():
        if match := SAMPLE.match(line):
            labels = dict(re.findall(r'(\w+)="([^"]*)"', match.group(2)))
            samples.setdefault(match.group(1), []).append((labels, float(match.group(3))))
        elif line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples.setdefault(name, []).append(({}, float(value)))
    return samples


def _sum(samples, name: str) -> float:
    return sum(value for _, value in samples.get(name, []))


def _drift(samples) -> tuple[float, float, float]:
    """(total variation of the class mix, mean confidence, the reference's) over the whole run, all versions."""
    live: dict[str, float] = {}
    for labels, value in samples.get("serving_predictions_total", []):
        live[labels["class"]] = live.get(labels["class"], 0.0) + value
    reference: dict[str, float] = {}
    for labels, value in samples.get("serving_reference_class_share", []):
        reference[labels["class"]] = max(reference.get(labels["class"], 0.0), value)
    total = sum(live.values()) or 1.0
    distance = 0.5 * sum(abs(live.get(c, 0.0) / total - reference.get(c, 0.0)) for c in set(live) | set(reference))
    count = _sum(samples, "serving_prediction_confidence_count") or 1.0
    confidence = _sum(samples, "serving_prediction_confidence_sum") / count
    references = [v for _, v in samples.get("serving_reference_confidence_mean", [])]
    return distance, confidence, max(references, default=0.0)
