"""The retraining job with a capture store (real SQLite and PostgreSQL, real repository): when there
is nothing to learn it says so in about a second without importing TensorFlow, an unreachable
store has its own exit code, labels it must not learn from are not counted, and a version trained
with production images can be reproduced from the copy it keeps, without the database."""
import json
import os
import shlex
import subprocess
import sys
import time

import numpy as np
import pytest

import modelrepo
from tests.harness import ROOT, free_port
from tests.labelled_store import fill
from tests.tiny_model import tiny_metadata, tiny_onnx
from training import production as prod

pytestmark = pytest.mark.slow  # runs the retraining CLI against SQLite and PostgreSQL: over 60 s on 2 cores

NAME = "fashion-mnist"
EXIT_NOTHING_TO_DO, EXIT_STORE = 5, 6
# The shipped weights at learning rate 0 (tests/integration/test_retrain.py): a candidate that
# predicts exactly as the served version, in a few steps.
KNOWN_GOOD = ["--epochs", "1", "--limit", "256", "--batch-size", "64", "--learning-rate", "0",
              "--init-from", str(ROOT / "models" / NAME / "1" / "model.onnx")]

# Runs the CLI in a fresh interpreter and prints whether TensorFlow was imported on the way.
PROBE = ("import sys; from training.__main__ import main; code = main(sys.argv[1:]); "
         "print('TENSORFLOW_IMPORTED' if 'tensorflow' in sys.modules else 'NO_TENSORFLOW'); sys.exit(code)")


def retrain(repo, store_url, *args):
    report = repo.parent / "report.json"
    env = {k: v for k, v in os.environ.items() if k not in ("MODEL_VERSION", "CAPTURE_URL")}
    result = subprocess.run([sys.executable, "-c", PROBE, "retrain", "--repository", str(repo), "--report", str(report),
                             "--store", store_url, *args], cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    return result, (json.loads(report.read_text()) if report.exists() else None)


@pytest.fixture(scope="module")
def train_images():
    from training.data import load_data

    train = load_data().train
    return (train.images[:2000, ..., 0] * 255).round().astype(np.uint8), train.labels[:2000]


def test_an_empty_store_is_nothing_to_do_without_tensorflow(bundled_repo, store_url):
    result, report = retrain(bundled_repo, store_url)
    assert result.returncode == EXIT_NOTHING_TO_DO, result.stdout + result.stderr[-2000:]
    assert "NO_TENSORFLOW" in result.stdout
    assert report["status"] == "nothing to do" and report["production"]["new_labels"] == 0
    assert "fewer than --min-new-labels 500" in report["reason"]
    assert modelrepo.list_versions(bundled_repo, NAME) == [1]


def test_an_unreachable_store_has_its_own_exit_code(bundled_repo):
    url = f"postgresql+psycopg://postgres:secret@127.0.0.1:{free_port()}/captures"  # nothing listens there
    result, report = retrain(bundled_repo, url)
    assert result.returncode == EXIT_STORE, result.stdout + result.stderr[-2000:]
    assert "NO_TENSORFLOW" in result.stdout
    assert report["status"] == "store unavailable" and "OperationalError" in report["error"]
    assert "secret" not in report["error"] and "secret" not in result.stdout + result.stderr


def test_labels_for_another_model_are_not_new_labels_for_this_one(bundled_repo, store_url, train_images):
    images, labels = train_images
    fill(store_url, images[:600], labels[:600], model="some-other-model")
    result, report = retrain(bundled_repo, store_url)
    assert result.returncode == EXIT_NOTHING_TO_DO, result.stdout + result.stderr[-2000:]
    assert report["production"]["new_labels"] == 0


def test_a_holdout_too_small_to_test_is_nothing_to_do(bundled_repo, store_url, train_images):
    images, labels = train_images
    fill(store_url, images[:300], labels[:300])
    result, report = retrain(bundled_repo, store_url, "--min-new-labels", "100", "--min-holdout", "300")
    assert result.returncode == EXIT_NOTHING_TO_DO, result.stdout + result.stderr[-2000:]
    assert "NO_TENSORFLOW" in result.stdout and report["production"]["new_labels"] == 300
    assert "300 usable labelled images: too few for a production holdout of 300" in report["reason"]


def test_poisoned_public_labels_are_excluded_by_default(bundled_repo, store_url, train_images):
    images, labels = train_images
    poisoned = labels[:600].copy()
    wrong = np.random.default_rng(0).choice(600, 180, replace=False)  # 30% wrong labels
    poisoned[wrong] = (poisoned[wrong] + 1) % 10
    fill(store_url, images[:600], poisoned, source="public")
    result, report = retrain(bundled_repo, store_url)
    assert result.returncode == EXIT_NOTHING_TO_DO and report["production"]["new_labels"] == 0
    assert report["production"]["sources"] == ["token"]
    # Asked for, they count (stopped before training by a holdout larger than what there is).
    result, report = retrain(bundled_repo, store_url, "--label-sources", "token", "public", "--min-holdout", "600")
    assert result.returncode == EXIT_NOTHING_TO_DO and report["production"]["new_labels"] == 600


def test_only_labels_after_the_served_versions_data_are_new(tmp_path, store_url, train_images):
    images, labels = train_images
    now = time.time()
    fill(store_url, images[:700], labels[:700], start=now - 1000)  # labelled now - 999.5 … now - 300.5
    repo = tmp_path / "models"
    staging = tmp_path / "staging"
    staging.mkdir()
    (staging / modelrepo.MODEL_FILE).write_bytes(tiny_onnx().SerializeToString())
    # The served version learned from the labels given up to now - 500: 200 are newer.
    metadata = tiny_metadata().model_copy(update={"training": {"production": {"labelled_until": now - 500}}})
    modelrepo.publish(repo, NAME, staging, metadata)
    result, report = retrain(repo, store_url, "--min-new-labels", "201")
    assert result.returncode == EXIT_NOTHING_TO_DO and report["production"]["new_labels"] == 200
    assert report["production"]["served_version"] == 1


def test_the_split_is_by_capture_time_and_the_copy_reads_back_exactly(tmp_path, store_url, train_images):
    images, labels = train_images
    fill(store_url, images[:500], labels[:500])
    data = prod.read(store_url, NAME, ("token",), holdout_fraction=0.2, min_holdout=50)
    assert (len(data.train), len(data.holdout)) == (400, 100)
    assert np.all(np.diff(data.captured_at) > 0)  # oldest first: the holdout is the newest 100
    assert np.array_equal(data.holdout.labels, labels[400:500])
    assert np.array_equal(data.images[..., 0], images[:500] / np.float32(255))
    prod.save(data, tmp_path / "p.npz")
    back = prod.load(tmp_path / "p.npz")
    assert np.array_equal(back.images, data.images) and np.array_equal(back.ids, data.ids)
    assert back.holdout_size == 100 and prod.ids_hash(back.ids) == data.describe("x")["ids_sha256"]


@pytest.mark.slow  # trains with TensorFlow, twice
def test_a_version_trained_on_production_images_is_reproducible_from_its_copy_alone(bundled_repo, tmp_path, train_images):
    images, labels = train_images
    database = tmp_path / "captures.db"
    fill(f"sqlite:///{database}", images[:300], labels[:300])
    result, report = retrain(bundled_repo, f"sqlite:///{database}", "--min-new-labels", "100", "--min-holdout", "60", *KNOWN_GOOD)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    assert "TENSORFLOW_IMPORTED" in result.stdout and report["status"] == "promoted" and report["version"] == 2
    # Both comparisons in the JSON report: the clean test and the production holdout (not drifted:
    # training images, which the served model knows; the same predictions are not worse there).
    production = report["gate"]["production"]
    assert production["drift"]["holdout_images"] == 60 and not production["drift"]["drifted"] and production["passed"]
    assert report["gate"]["comparisons"][0]["reference"] == "current"

    folder = modelrepo.version_dir(bundled_repo, NAME, 2)
    card = modelrepo.read_metadata(folder).training
    copy = folder / "report" / prod.COPY_NAME
    assert card["production"]["images"] == 300 and card["production"]["holdout_images"] == 60
    assert card["production"]["copy"] == str(copy) and copy.is_file()
    kept = prod.load(copy)
    assert prod.ids_hash(kept.ids) == card["production"]["ids_sha256"] and np.array_equal(kept.labels, labels[:300])
    readme = (folder / "report" / "README.md").read_text()
    assert "## Production data" in readme and "production holdout, current v1" in readme and card["production"]["ids_sha256"] in readme

    # Reproduce from the copy alone: no database anywhere.
    database.unlink()
    (train_command,) = [c for c in card["commands"] if c.startswith("python -m training train") and "--production" in c]
    assert f"--production {copy}" in train_command
    env = {k: v for k, v in os.environ.items() if k != "CAPTURE_URL"} | {"PYTHONPATH": str(ROOT)}
    words = shlex.split(train_command)
    assert words[:3] == ["python", "-m", "training"]
    again = subprocess.run([sys.executable, *words[1:]], cwd=tmp_path, capture_output=True, text=True, timeout=600, env=env)
    assert again.returncode == 0, again.stdout + again.stderr[-3000:]
    run = json.loads((tmp_path / "runs" / "retrain" / "run.json").read_text())
    assert run["config"]["production"] == str(copy) and run["config"]["production_share"] == 0.25
