"""The retraining job end to end (real training on a small subset, real repository): what it
compares against, the gate, the warm start from the served version, and every exit code."""
import json
import os
import shutil
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

import modelrepo
from tests.harness import ROOT, start_server
from tests.tiny_model import publish_tiny

pytestmark = pytest.mark.slow  # trains and retrains with TensorFlow

NAME = "fashion-mnist"
# A candidate far worse than the shipped model (92%): 8 steps from random weights land
# anywhere from 10% to 25% (TensorFlow on CPU is not bit-reproducible), so only use it where
# any such figure gives the same verdict.
FROM_SCRATCH = ["--epochs", "1", "--limit", "512", "--batch-size", "64", "--init-from", "none",
                "--learning-rate", "1e-3", "--ema-momentum", "0"]
# A candidate far better than any tiny model (6-11%): the shipped weights at learning rate 0,
# exactly 92.04% every time.
KNOWN_GOOD = ["--epochs", "1", "--limit", "256", "--batch-size", "64", "--learning-rate", "0",
              "--init-from", str(ROOT / "models" / NAME / "1" / "model.onnx")]


def retrain(repo, *args, env=None, report="r.json"):
    report = repo.parent / report
    result = subprocess.run([sys.executable, "-m", "training", "retrain", "--repository", str(repo), "--report", str(report), *args],
                            cwd=ROOT, capture_output=True, text=True, timeout=900,
                            env={k: v for k, v in os.environ.items() if k != "MODEL_VERSION"} | (env or {}))
    return result, (json.loads(report.read_text()) if report.exists() else None)


def _only_metadata_missing(repo, version, source=1):
    folder = modelrepo.version_dir(repo, NAME, version)
    folder.mkdir()
    shutil.copy(modelrepo.version_dir(repo, NAME, source) / modelrepo.MODEL_FILE, folder)


def test_promotes_then_prunes_but_never_the_served_or_the_best(tmp_path):
    repo = tmp_path / "models"
    publish_tiny(repo, seed=1)  # 6.3% on the test set
    publish_tiny(repo, seed=0)  # 8.6%: served and best
    result, report = retrain(repo, *KNOWN_GOOD, "--keep", "2")
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    assert report["status"] == "promoted" and report["decision"] == "promote" and report["version"] == 3
    assert report["current_version"] == report["champion_version"] == 2
    assert report["current_accuracy"] == pytest.approx(0.086, abs=1e-4)
    (comparison,) = report["gate"]["comparisons"]
    assert comparison["candidate_only"] > comparison["reference_only"] and comparison["p_value"] > 0.99
    assert report["pruned"] == [1] and modelrepo.list_versions(repo, NAME) == [2, 3]


def test_rejects_a_significantly_worse_candidate(bundled_repo):
    # The floor is off: the paired test alone must reject it, against the shipped model.
    result, report = retrain(bundled_repo, *FROM_SCRATCH, "--min-accuracy", "0")
    assert result.returncode == 3, result.stdout + result.stderr[-3000:]
    assert report["status"] == "rejected" and report["decision"] == "reject"
    assert report["current_version"] == 1 and report["current_accuracy"] == pytest.approx(0.9204, abs=1e-4)
    (comparison,) = report["gate"]["comparisons"]
    assert comparison["reference_only"] > comparison["candidate_only"] and comparison["p_value"] < 1e-6
    assert "worse than the current v1" in report["reason"]
    assert modelrepo.list_versions(bundled_repo, NAME) == [1]


def test_gates_against_the_served_version_measured_now_not_the_newest_folder(tmp_path):
    repo = tmp_path / "models"
    publish_tiny(repo, accuracy=0.99)  # the metadata claims 0.99; it scores 8.6%
    _only_metadata_missing(repo, 2)  # newest folder, not servable
    result, report = retrain(repo, *KNOWN_GOOD)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    assert report["current_version"] == 1 and report["current_accuracy"] == pytest.approx(0.086, abs=1e-4)
    assert "2" in report["not_servable"] and report["version"] == 3


@pytest.mark.parametrize("where", ["MODEL_VERSION", "admin decision"])
def test_a_rollback_pin_is_what_the_gate_compares_against(tmp_path, where):
    repo = tmp_path / "models"
    publish_tiny(repo, seed=0)
    publish_tiny(repo, seed=1)  # the newest; the operator rolled back to 1
    env = {"MODEL_VERSION": "1"}
    if where == "admin decision":
        env = {"MODEL_VERSION": "2"}  # the admin pin, recorded in the repository, wins
        modelrepo.record_decision(repo, NAME, modelrepo.Decision(pinned=1))
    result, report = retrain(repo, *KNOWN_GOOD, env=env)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    assert report["pinned"] == 1 and report["current_version"] == 1
    assert report["current_accuracy"] == pytest.approx(0.086, abs=1e-4)


def test_a_rollback_through_the_api_is_what_the_scheduled_job_gates_against_and_never_prunes(tmp_path, wait_for_version,
                                                                                              eventually):
    repo = tmp_path / "models"
    publish_tiny(repo, seed=1)  # 1: 6.3%, the operator's rollback target (neither the best nor the newest)
    publish_tiny(repo, seed=0)  # 2: 8.6%, the best
    publish_tiny(repo, seed=2)  # 3: the newest
    token = "s3cret-token"
    server = start_server(repo, tmp_path, ADMIN_TOKEN=token, RELOAD_POLL_SECONDS="0.3")
    try:
        pinned = requests.post(f"{server.url}/v2/repository/models/{NAME}/load", json={"parameters": {"version": "1"}},
                               headers={"Authorization": f"Bearer {token}"}, timeout=30)
        assert pinned.status_code == 200, pinned.text
        wait_for_version(server.url, "1")
        # As the CronJob and the compose trainer run it: MODEL_VERSION empty, and no option
        # saying where the servers keep their decisions (they are in the repository).
        result, report = retrain(repo, *KNOWN_GOOD, "--keep", "1", env={"MODEL_VERSION": ""})
        assert result.returncode == 0, result.stdout + result.stderr[-3000:]
        assert report["pinned"] == 1 and report["current_version"] == 1
        assert report["version"] == 4 and 1 not in report["pruned"] and 1 in modelrepo.list_versions(repo, NAME)
        # A worker that restarts after the prune serves the pin too: the fleet never splits.
        assert server.process.poll() is None, server.output()
        victim = server.workers()[0]
        os.kill(victim, signal.SIGKILL)
        eventually(lambda: server.replaced(victim), timeout=60, what="a replacement worker")
        wait_for_version(server.url, "1")
    finally:
        server.stop()


def test_the_scheduled_recipe_warm_starts_from_the_served_weights(bundled_repo):
    # At learning rate 0 the weights cannot move: the candidate must be the served model
    # itself, image for image, which only a correct ONNX → Keras mapping can give.
    result, report = retrain(bundled_repo, "--epochs", "1", "--limit", "256", "--batch-size", "64", "--learning-rate", "0")
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    assert report["config"]["init_from"] == "served" and report["init_from"]["version"] == 1
    assert report["candidate_accuracy"] == pytest.approx(0.9204, abs=1e-4)
    (comparison,) = report["gate"]["comparisons"]
    assert (comparison["candidate_only"], comparison["reference_only"]) == (0, 0) and comparison["p_value"] == 1.0
    commands = modelrepo.verify(bundled_repo, NAME, 2).training["commands"]
    assert commands[:4] == modelrepo.verify(bundled_repo, NAME, 1).training["commands"]
    assert f"--init-from {modelrepo.version_dir(bundled_repo, NAME, 1) / 'model.onnx'}" in commands[4]


def test_a_prune_failure_after_promotion_is_a_warning(tmp_path):
    repo = tmp_path / "models"
    publish_tiny(repo, seed=1)
    # Version 2 is a link to an archived copy inside the repository: it serves, but prune
    # refuses to delete through a link, after the candidate is published.
    archive = repo / "archive" / "2"
    shutil.copytree(modelrepo.version_dir(repo, NAME, 1), archive)
    meta = json.loads((archive / "metadata.json").read_text())
    (archive / "metadata.json").write_text(json.dumps(meta | {"version": 2}))
    modelrepo.version_dir(repo, NAME, 2).symlink_to(archive)
    publish_tiny(repo, seed=0)  # 3: served and best
    result, report = retrain(repo, *KNOWN_GOOD, "--keep", "1")
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    assert report["status"] == "promoted" and report["version"] == 4
    assert "prune failed" in report["warnings"][0]
    modelrepo.verify(repo, NAME, 4)


def test_a_missing_dataset_exits_2_with_a_report(tmp_path):
    result, report = retrain(tmp_path / "models", env={"FASHION_MNIST_DIR": str(tmp_path / "nowhere")})
    assert result.returncode == 2, result.stdout + result.stderr[-3000:]
    assert report["status"] == "dataset missing" and "dataset-fashion-mnist" in report["error"]


def test_a_failed_job_exits_4_with_a_report(tmp_path):
    result, report = retrain(tmp_path / "models", *FROM_SCRATCH, "--batch-size", "0")
    assert result.returncode == 4
    assert report["status"] == "failed"
    assert modelrepo.list_versions(tmp_path / "models", NAME) == []


@pytest.mark.parametrize("keep", ["0", "-1", "two"])
def test_an_invalid_keep_is_refused_before_anything_runs(tmp_path, keep):
    result, report = retrain(tmp_path / "models", "--keep", keep)
    assert result.returncode == 2 and "--keep" in result.stderr and report is None


def test_concurrent_retrains_get_distinct_versions(tmp_path):
    repo = tmp_path / "models"
    publish_tiny(repo)
    # The gate always passes here (significance 0): this test is about version numbers.
    args = [*FROM_SCRATCH, "--min-accuracy", "0", "--significance", "0"]
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda seed: retrain(repo, *args, "--seed", str(seed), report=f"r{seed}.json"), [1, 2]))
    assert [r.returncode for r, _ in results] == [0, 0], [r.stderr[-2000:] for r, _ in results]
    assert modelrepo.list_versions(repo, NAME) == [1, 2, 3]
    for version in (2, 3):
        modelrepo.verify(repo, NAME, version)
