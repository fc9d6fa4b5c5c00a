"""The model repository: atomic publish (crash included), locking, verification, pruning."""
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor

import pytest

import modelrepo
from modelrepo import store
from tests.tiny_model import publish_tiny, tiny_metadata, tiny_onnx


def test_publish_allocates_increasing_versions_and_verifies(tmp_path):
    repo = tmp_path / "models"
    assert [publish_tiny(repo, seed=s) for s in range(3)] == [1, 2, 3]
    assert modelrepo.list_versions(repo, "fashion-mnist") == [1, 2, 3]
    meta = modelrepo.verify(modelrepo.version_dir(repo, "fashion-mnist", 3))
    assert meta.version == 3 and len(meta.sha256) == 64


def test_verify_rejects_a_tampered_model(tmp_path):
    repo = tmp_path / "models"
    publish_tiny(repo)
    model = modelrepo.version_dir(repo, "fashion-mnist", 1) / "model.onnx"
    model.write_bytes(model.read_bytes()[:-10])
    with pytest.raises(modelrepo.RepositoryError, match="sha256"):
        modelrepo.verify(model.parent)


def _crash_during_publish(repo):
    # Die the hard way (no cleanup, no finally) right before the rename makes the version visible.
    store.os.rename = lambda *a: os._exit(17)
    publish_tiny(repo, seed=9)


@pytest.mark.parametrize("point", ["before-rename", "mid-copy"])
def test_a_crash_mid_publish_leaves_no_version(tmp_path, point):
    repo = tmp_path / "models"
    publish_tiny(repo)
    target = _crash_during_publish if point == "before-rename" else _crash_mid_copy
    child = multiprocessing.get_context("fork").Process(target=target, args=(repo,))
    child.start()
    child.join(30)
    assert child.exitcode == 17
    assert modelrepo.list_versions(repo, "fashion-mnist") == [1]
    assert any(p.name.startswith(".tmp-") for p in (repo / "fashion-mnist").iterdir()), "the crash left its staging folder"
    assert publish_tiny(repo, seed=3) == 2  # the next publisher cleans up and goes on
    assert not any(p.name.startswith(".tmp-") for p in (repo / "fashion-mnist").iterdir())


def _crash_mid_copy(repo):
    original = store.shutil.copyfile

    def copy_then_die(src, dst, **kw):
        original(src, dst, **kw)
        os._exit(17)

    store.shutil.copyfile = copy_then_die
    publish_tiny(repo, seed=9)


def _publish_one(args):
    repo, seed = args
    return publish_tiny(repo, seed=seed)


def test_concurrent_publishers_never_share_a_version(tmp_path):
    repo = tmp_path / "models"
    with ProcessPoolExecutor(4, mp_context=multiprocessing.get_context("fork")) as pool:
        versions = list(pool.map(_publish_one, [(repo, s) for s in range(8)]))
    assert sorted(versions) == list(range(1, 9))
    for v in versions:
        modelrepo.verify(modelrepo.version_dir(repo, "fashion-mnist", v))


def test_gate_runs_under_the_lock_and_can_reject(tmp_path):
    repo = tmp_path / "models"
    publish_tiny(repo, accuracy=0.92)
    staging = tmp_path / "staging"
    staging.mkdir()
    import onnx

    onnx.save(tiny_onnx(), staging / "model.onnx")
    seen = []
    with pytest.raises(modelrepo.Rejected):
        modelrepo.publish(repo, "fashion-mnist", staging, tiny_metadata(), accept=lambda cur: seen.append(cur.version) or False)
    assert seen == [1] and modelrepo.list_versions(repo, "fashion-mnist") == [1]


def test_prune_keeps_the_newest_and_protected(tmp_path):
    repo = tmp_path / "models"
    for seed in range(5):
        publish_tiny(repo, seed=seed)
    assert modelrepo.prune(repo, "fashion-mnist", keep=2, protect={1}) == [2, 3]
    assert modelrepo.list_versions(repo, "fashion-mnist") == [1, 4, 5]


@pytest.mark.parametrize("name", ["../etc", "..", "a/b", "", ".hidden"])
def test_unsafe_names_are_refused(tmp_path, name):
    assert not modelrepo.valid_name(name)
    assert modelrepo.list_versions(tmp_path, name) == []
