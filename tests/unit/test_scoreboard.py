"""What the gate compares against: the version the service would serve and the best one, both
measured now on the real test images, whatever their metadata claims."""
import shutil

import pytest

import modelrepo
from tests.tiny_model import publish_tiny, tiny_onnx
from training.scoreboard import Scoreboard, pinned_version

NAME = "fashion-mnist"
IMAGES = 2_000  # of the test split: enough to tell 92% from 10%, and quick on two cores


@pytest.fixture
def repo(bundled_repo):
    """v1: the shipped 92% model; v2: a random tiny model whose metadata claims 0.99;
    v3: the newest folder, with a model.onnx but no metadata.json (not servable)."""
    shutil.rmtree(bundled_repo / "fashion-mnist-int8")
    assert publish_tiny(bundled_repo, accuracy=0.99) == 2
    broken = modelrepo.version_dir(bundled_repo, NAME, 3)
    broken.mkdir()
    shutil.copy(modelrepo.version_dir(bundled_repo, NAME, 1) / modelrepo.MODEL_FILE, broken)
    return bundled_repo


@pytest.mark.slow  # measures versions on the test split: over 10 s
def test_current_is_the_newest_servable_version_measured_now(repo, test_split):
    board = Scoreboard(repo, NAME, test_split.head(IMAGES))
    assert board.current(None) == 2  # v3 does not verify: the service would skip it too
    assert "metadata.json" in board.skipped[3]
    assert board.accuracy(2) < 0.2, "the 0.99 in its metadata.json must not be the bar"
    assert board.champion() == 1 and board.accuracy(1) > 0.9


@pytest.mark.slow  # measures versions on the test split: over 10 s
def test_a_pin_is_served_alone(repo, test_split):
    board = Scoreboard(repo, NAME, test_split.head(IMAGES))
    assert board.current(1) == 1
    assert board.current(3) is None  # a pinned version that does not verify serves nothing
    assert board.current(7) is None


def test_a_version_onnxruntime_cannot_run_is_not_servable(tmp_path, test_split):
    repository = tmp_path / "models"
    publish_tiny(repository)
    graph = tiny_onnx(seed=1)
    graph.graph.node[1].op_type = "NoSuchOp"  # verifies (the sha256 matches) but cannot be opened
    publish_tiny(repository, seed=1, model=graph)
    board = Scoreboard(repository, NAME, test_split.head(IMAGES))
    assert board.current(None) == 1 and "onnxruntime" in board.skipped[2]


def test_an_operators_decision_in_the_repository_overrides_model_version(tmp_path):
    repo = tmp_path / "models"
    publish_tiny(repo)
    publish_tiny(repo, name="other-model")
    assert pinned_version(repo, NAME, 3) == 3  # MODEL_VERSION alone: no decision recorded
    modelrepo.record_decision(repo, "other-model", modelrepo.Decision(pinned=1))
    assert pinned_version(repo, NAME, 3) == 3
    modelrepo.record_decision(repo, NAME, modelrepo.Decision(pinned=1))
    assert pinned_version(repo, NAME, 3) == 1  # the rollback an operator made at run time
    modelrepo.record_decision(repo, NAME, modelrepo.Decision(pinned=None))
    assert pinned_version(repo, NAME, 3) is None  # "follow the newest again" wins over the start-up pin
    modelrepo.record_decision(repo, NAME, None)
    assert pinned_version(repo, NAME, 3) == 3  # cleared: MODEL_VERSION again
