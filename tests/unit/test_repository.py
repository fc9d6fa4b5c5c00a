"""The model repository: atomic publish (crash included), locking, verification, pruning, safety."""
import multiprocessing
import os
import stat
from concurrent.futures import ProcessPoolExecutor

import onnx
import pytest

import modelrepo
from modelrepo import writing as publishing
from tests.tiny_model import publish_tiny, tiny_metadata, tiny_onnx

NAME = "fashion-mnist"


def _verify(repo, version):
    return modelrepo.verify(repo, NAME, version)


def test_publish_allocates_increasing_versions_and_verifies(tmp_path):
    repo = tmp_path / "models"
    assert [publish_tiny(repo, seed=s) for s in range(3)] == [1, 2, 3]
    assert modelrepo.list_versions(repo, NAME) == [1, 2, 3]
    meta = _verify(repo, 3)
    assert meta.version == 3 and len(meta.sha256) == 64


def test_verify_rejects_a_tampered_model(tmp_path):
    repo = tmp_path / "models"
    publish_tiny(repo)
    model = modelrepo.version_dir(repo, NAME, 1) / "model.onnx"
    model.write_bytes(model.read_bytes()[:-10])
    with pytest.raises(modelrepo.RepositoryError, match="sha256"):
        _verify(repo, 1)


@pytest.mark.parametrize("break_it", [
    lambda d: (d / "metadata.json").unlink() or (d / "metadata.json").mkdir(),
    lambda d: (d / "metadata.json").write_text("{not json"),
    lambda d: (d / "model.onnx").unlink(),
    lambda d: (d / "model.onnx").unlink() or (d / "model.onnx").mkdir(),
], ids=["metadata-is-a-folder", "metadata-corrupt", "model-missing", "model-is-a-folder"])
def test_every_broken_version_is_a_repository_error(tmp_path, break_it):
    # Whatever is wrong on disk, readers get our one error type, never OSError or ValueError.
    repo = tmp_path / "models"
    publish_tiny(repo)
    break_it(modelrepo.version_dir(repo, NAME, 1))
    with pytest.raises(modelrepo.RepositoryError):
        _verify(repo, 1)
    assert modelrepo.served_version(repo, NAME) is None


def _crash_during_publish(repo):
    # Die the hard way (no cleanup, no finally) right before the rename makes the version visible.
    publishing.os.rename = lambda *a: os._exit(17)
    publish_tiny(repo, seed=9)


def _crash_mid_copy(repo):
    original = publishing.shutil.copyfile

    def copy_then_die(src, dst, **kw):
        original(src, dst, **kw)
        os._exit(17)

    publishing.shutil.copyfile = copy_then_die
    publish_tiny(repo, seed=9)


def _crash_mid_prune(repo):
    # The version is already renamed to trash when the pruner dies.
    publishing.shutil.rmtree = lambda *a, **kw: os._exit(17)
    modelrepo.prune(repo, NAME, keep=1)


def _fork(target, *args):
    child = multiprocessing.get_context("fork").Process(target=target, args=args)
    child.start()
    child.join(30)
    return child.exitcode


@pytest.mark.parametrize("point", ["before-rename", "mid-copy"])
def test_a_crash_mid_publish_leaves_no_version(tmp_path, point):
    repo = tmp_path / "models"
    publish_tiny(repo)
    assert _fork(_crash_during_publish if point == "before-rename" else _crash_mid_copy, repo) == 17
    assert modelrepo.list_versions(repo, NAME) == [1]
    assert any(p.name.startswith(".tmp-") for p in (repo / NAME).iterdir()), "the crash left its staging folder"
    assert publish_tiny(repo, seed=3) == 2  # the next publisher cleans up and goes on
    assert not any(p.name.startswith(".tmp-") for p in (repo / NAME).iterdir())


def test_a_crash_mid_prune_leaves_trash_that_the_next_writer_removes(tmp_path):
    repo = tmp_path / "models"
    publish_tiny(repo)
    publish_tiny(repo, seed=1)
    assert _fork(_crash_mid_prune, repo) == 17
    assert modelrepo.list_versions(repo, NAME) == [2]
    assert any(p.name.startswith(".trash-") for p in (repo / NAME).iterdir())
    assert modelrepo.prune(repo, NAME, keep=5) == []
    assert not any(p.name.startswith(".trash-") for p in (repo / NAME).iterdir())


def _publish_one(args):
    repo, seed = args
    return publish_tiny(repo, seed=seed)


def test_concurrent_publishers_never_share_a_version(tmp_path):
    repo = tmp_path / "models"
    with ProcessPoolExecutor(4, mp_context=multiprocessing.get_context("fork")) as pool:
        versions = list(pool.map(_publish_one, [(repo, s) for s in range(8)]))
    assert sorted(versions) == list(range(1, 9))
    for v in versions:
        _verify(repo, v)


def test_gate_runs_under_the_lock_and_can_reject(tmp_path):
    repo = tmp_path / "models"
    publish_tiny(repo, accuracy=0.92)
    staging = tmp_path / "staging"
    staging.mkdir()
    onnx.save(tiny_onnx(), staging / "model.onnx")
    seen = []

    def gate():
        seen.append(modelrepo.served_version(repo, NAME)[0])
        return False

    with pytest.raises(modelrepo.Rejected):
        modelrepo.publish(repo, NAME, staging, tiny_metadata(), accept=gate)
    assert seen == [1] and modelrepo.list_versions(repo, NAME) == [1]


def test_a_corrupt_newest_version_never_blocks_publishing(tmp_path):
    repo = tmp_path / "models"
    publish_tiny(repo)
    publish_tiny(repo, seed=1)
    (modelrepo.version_dir(repo, NAME, 2) / "metadata.json").write_text("{corrupt")
    assert publish_tiny(repo, seed=2) == 3  # the number comes from the folder names


def test_published_versions_are_readable_by_other_users_whatever_the_umask(tmp_path):
    repo = tmp_path / "models"
    old = os.umask(0o077)
    try:
        staging = tmp_path / "staging"
        (staging / "report").mkdir(parents=True)
        staging.chmod(0o700)
        onnx.save(tiny_onnx(), staging / "model.onnx")
        (staging / "report" / "README.md").write_text("card")
        version = modelrepo.publish(repo, NAME, staging, tiny_metadata())
    finally:
        os.umask(old)
    folder = modelrepo.version_dir(repo, NAME, version)
    modes = {p.relative_to(repo): stat.S_IMODE(p.stat().st_mode) for p in [repo / NAME, folder, *folder.rglob("*")]}
    assert modes == {p: (0o755 if (repo / p).is_dir() else 0o644) for p in modes}, modes


def test_prune_keeps_the_newest_the_served_and_the_protected(tmp_path):
    repo = tmp_path / "models"
    for seed in range(6):
        publish_tiny(repo, seed=seed)
    # The newest (6) is broken, so a server following the newest serves 5.
    (modelrepo.version_dir(repo, NAME, 6) / "model.onnx").write_bytes(b"broken")
    assert modelrepo.prune(repo, NAME, keep=1, protect={2}) == [1, 3, 4]
    assert modelrepo.list_versions(repo, NAME) == [2, 5, 6]
    with pytest.raises(ValueError, match="at least 1"):
        modelrepo.prune(repo, NAME, keep=0)


def test_prune_refuses_a_linked_version_before_touching_anything(tmp_path):
    repo = tmp_path / "models"
    publish_tiny(repo)
    archive = tmp_path / "models" / "archive"
    (repo / NAME / "1").rename(archive)
    (repo / NAME / "1").symlink_to(archive)  # version 1 now lives elsewhere in the repository
    for seed in range(1, 4):
        publish_tiny(repo, seed=seed)
    with pytest.raises(modelrepo.RepositoryError, match=r"versions \[1\] are symbolic links"):
        modelrepo.prune(repo, NAME, keep=1)
    assert modelrepo.list_versions(repo, NAME) == [1, 2, 3, 4] and archive.is_dir()
    assert not [p for p in (repo / NAME).iterdir() if p.name.startswith(".trash-")]


def test_symlinks_never_lead_out_of_the_repository(tmp_path):
    repo = tmp_path / "models"
    publish_tiny(repo)
    outside = tmp_path / "elsewhere"
    publish_tiny(outside, seed=1)
    # A version folder linked to another repository is not a version.
    (repo / NAME / "2").symlink_to(modelrepo.version_dir(outside, NAME, 1))
    assert modelrepo.list_versions(repo, NAME) == [1]
    # A report folder linked to /etc serves nothing.
    report = modelrepo.version_dir(repo, NAME, 1) / "report"
    report.symlink_to("/etc")
    with pytest.raises(modelrepo.RepositoryError, match="outside the repository"):
        modelrepo.report_file(repo, NAME, 1, "passwd")
    # A model file linked out of the repository does not verify.
    model = modelrepo.version_dir(repo, NAME, 1) / "model.onnx"
    model.unlink()
    model.symlink_to(modelrepo.version_dir(outside, NAME, 1) / "model.onnx")
    with pytest.raises(modelrepo.RepositoryError, match="outside the repository"):
        _verify(repo, 1)


def test_report_files_are_plain_names_inside_report(tmp_path):
    repo = tmp_path / "models"
    publish_tiny(repo)
    folder = modelrepo.version_dir(repo, NAME, 1)
    (folder / "report").mkdir()
    (folder / "report" / "README.md").write_text("card")
    assert modelrepo.report_file(repo, NAME, 1, "README.md").read_text() == "card"
    for bad in ("../metadata.json", "..", ".hidden", "missing.png"):
        with pytest.raises(FileNotFoundError):
            modelrepo.report_file(repo, NAME, 1, bad)


@pytest.mark.parametrize("name", ["../etc", "..", "a/b", "", ".hidden"])
def test_unsafe_names_are_refused(tmp_path, name):
    assert not modelrepo.valid_name(name)
    assert modelrepo.list_versions(tmp_path, name) == []


def _decide(args):
    repo, name = args
    modelrepo.record_decision(repo, name, modelrepo.Decision(pinned=1))


def test_concurrent_decisions_on_different_models_all_hold(tmp_path):
    repo = tmp_path / "models"
    names = [f"model-{i}" for i in range(8)]
    for name in names:
        publish_tiny(repo, name=name)
    with ProcessPoolExecutor(4, mp_context=multiprocessing.get_context("fork")) as pool:
        list(pool.map(_decide, [(repo, name) for name in names]))
    assert all(modelrepo.read_decision(repo, name) == modelrepo.Decision(pinned=1) for name in names)


def test_decisions_live_with_the_model_and_change_their_stamp(tmp_path):
    repo = tmp_path / "models"
    publish_tiny(repo)
    before = modelrepo.decision_stamp(repo, NAME)
    assert modelrepo.read_decision(repo, NAME) is None
    modelrepo.record_decision(repo, NAME, modelrepo.Decision(unloaded=True))
    assert modelrepo.decision_stamp(repo, NAME) != before
    assert modelrepo.read_decision(repo, NAME) == modelrepo.Decision(unloaded=True)
    assert (repo / NAME / modelrepo.DECISIONS_FILE).stat().st_mode & 0o777 == 0o644
    modelrepo.record_decision(repo, NAME, None)  # cleared: servers follow MODEL_VERSION again
    assert modelrepo.read_decision(repo, NAME) is None and modelrepo.decision_stamp(repo, NAME) == before
    with pytest.raises(modelrepo.RepositoryError, match="no version 7"):
        modelrepo.record_decision(repo, NAME, modelrepo.Decision(pinned=7))
    with pytest.raises(modelrepo.RepositoryError, match="no model"):
        modelrepo.record_decision(repo, "no-such-model", None)
    assert not (repo / "no-such-model").exists()


def test_prune_spares_the_version_a_decision_pins(tmp_path):
    repo = tmp_path / "models"
    for seed in range(4):
        publish_tiny(repo, seed=seed)
    modelrepo.record_decision(repo, NAME, modelrepo.Decision(pinned=1))
    assert modelrepo.prune(repo, NAME, keep=1) == [2, 3]
    assert modelrepo.list_versions(repo, NAME) == [1, 4]


def test_an_unreadable_decision_stops_prune_before_anything_is_deleted(tmp_path):
    repo = tmp_path / "models"
    for seed in range(3):
        publish_tiny(repo, seed=seed)
    (repo / NAME / modelrepo.DECISIONS_FILE).write_text('{"pinned": "the old one"}')
    with pytest.raises(modelrepo.RepositoryError, match="not a decision"):
        modelrepo.prune(repo, NAME, keep=1)
    assert modelrepo.list_versions(repo, NAME) == [1, 2, 3]


def test_publishing_requires_a_declared_input_range(tmp_path):
    staging = tmp_path / "staging"
    staging.mkdir()
    onnx.save(tiny_onnx(), staging / "model.onnx")
    metadata = tiny_metadata()
    unranged = metadata.model_copy(update={"inputs": [metadata.inputs[0].model_copy(update={"range": None})]})
    with pytest.raises(modelrepo.RepositoryError, match="range"):
        modelrepo.publish(tmp_path / "models", NAME, staging, unranged)
    assert modelrepo.list_versions(tmp_path / "models", NAME) == []


def test_the_shipped_versions_declare_their_input_range_and_still_verify(bundled):
    for name in modelrepo.list_models(bundled):
        for version in modelrepo.list_versions(bundled, name):
            metadata = modelrepo.verify(bundled, name, version)
            assert [spec.range for spec in metadata.inputs] == [(0.0, 1.0)], f"{name}/{version}"


def _decide_as_a_reader(repo):
    # root ignores file modes: decide as nobody, to whom the model folder is read-only.
    if os.getuid() == 0:
        os.setgid(65534)
        os.setuid(65534)
    try:
        modelrepo.record_decision(repo, NAME, modelrepo.Decision(pinned=1))
    except modelrepo.Unwritable:
        os._exit(3)
    except BaseException:  # noqa: BLE001  (any other outcome is the wrong one)
        os._exit(4)
    os._exit(5)


def test_a_decision_in_a_repository_this_process_cannot_write_is_unwritable_and_changes_nothing(tmp_path):
    repo = tmp_path / "models"
    publish_tiny(repo)
    modelrepo.record_decision(repo, NAME, modelrepo.Decision(unloaded=True))
    for folder in (tmp_path, repo):
        folder.chmod(0o755)
    (repo / NAME).chmod(0o555)
    try:
        assert _fork(_decide_as_a_reader, repo) == 3
    finally:
        (repo / NAME).chmod(0o755)
    assert modelrepo.read_decision(repo, NAME) == modelrepo.Decision(unloaded=True)
