"""Hot reload: new versions swap in under load; any broken version is failed, counted once and ignored."""
import shutil
import threading

import onnx
import pytest
import requests

import modelrepo
from tests.harness import start_server
from tests.tiny_model import publish_tiny, tiny_metadata, tiny_onnx

pytestmark = pytest.mark.slow  # hot swaps under load: 35 s

SCANS = "serving_repository_scans_total"
FAILURES = "serving_model_load_failures_total"


def test_hot_swap_under_load_fails_no_request(tiny_repo, tmp_path, classify, wait_for_version, eventually):
    server = start_server(tiny_repo, tmp_path, RELOAD_POLL_SECONDS="0.5")
    results, stop = [], threading.Event()

    def load():
        while not stop.is_set():
            results.append(classify(server.url))

    threads = [threading.Thread(target=load) for _ in range(6)]
    try:
        for t in threads:
            t.start()
        eventually(lambda: len(results) > 30, what="load on version 1")
        publish_tiny(tiny_repo, seed=1)
        wait_for_version(server.url, "2")
        swapped = len(results)
        eventually(lambda: len(results) > swapped + 30, what="load on version 2")
    finally:
        stop.set()
        for t in threads:
            t.join()
        server.stop()
    assert {status for status, _ in results} == {200}, f"{sum(s != 200 for s, _ in results)} of {len(results)} requests failed"
    assert {version for _, version in results} == {"1", "2"}


def _next(repo):
    return modelrepo.version_dir(repo, "fashion-mnist", (modelrepo.newest_version(repo, "fashion-mnist") or 0) + 1)


def _corrupt_onnx(repo):
    folder = _next(repo)
    folder.mkdir()
    (folder / "model.onnx").write_bytes(b"this is not a protobuf")
    meta = tiny_metadata().model_copy(update={"version": int(folder.name), "sha256": modelrepo.sha256_file(folder / "model.onnx")})
    (folder / "metadata.json").write_text(meta.model_dump_json())


def _wrong_shape(repo):
    publish_tiny(repo, model=tiny_onnx(classes=5))  # 5 outputs where the served version has 10


def _missing_metadata(repo):
    (modelrepo.version_dir(repo, "fashion-mnist", publish_tiny(repo, seed=1)) / "metadata.json").unlink()


def _metadata_is_a_directory(repo):
    metadata = modelrepo.version_dir(repo, "fashion-mnist", publish_tiny(repo, seed=1)) / "metadata.json"
    metadata.unlink()
    metadata.mkdir()


def _model_vanished(repo):
    # Listed, then gone when read: a dangling link is the same thing, frozen in time.
    model = modelrepo.version_dir(repo, "fashion-mnist", publish_tiny(repo, seed=1)) / "model.onnx"
    model.unlink()
    model.symlink_to(repo / "no-such-file")


def _sha_mismatch(repo):
    onnx.save(tiny_onnx(seed=5), modelrepo.version_dir(repo, "fashion-mnist", publish_tiny(repo, seed=1)) / "model.onnx")


def _linked_outside(repo):
    # The model file is a link to a copy outside the repository.
    outside = repo.parent / "outside"
    publish_tiny(outside, seed=1)
    model = modelrepo.version_dir(repo, "fashion-mnist", publish_tiny(repo, seed=1)) / "model.onnx"
    model.unlink()
    model.symlink_to(modelrepo.version_dir(outside, "fashion-mnist", 1) / "model.onnx")


BREAKAGES = [_corrupt_onnx, _wrong_shape, _missing_metadata, _metadata_is_a_directory, _model_vanished, _sha_mismatch, _linked_outside]


def _break_all(repo) -> list[str]:
    """One new version per way of being broken (2, 3, …); returns their numbers.

    They are built in a scratch copy and renamed in whole, as a publisher would: a scan that
    caught one half-written would see its files change and rightly try it again.
    """
    scratch = repo.parent / "scratch"
    shutil.copytree(repo, scratch)
    for break_it in BREAKAGES:
        break_it(scratch)
    versions = [str(v) for v in range(2, 2 + len(BREAKAGES))]
    for version in versions:
        (scratch / "fashion-mnist" / version).rename(repo / "fashion-mnist" / version)
    return versions


def test_broken_new_versions_are_failed_once_and_the_old_one_keeps_serving(tiny_repo, tmp_path, classify, metric, eventually):
    server = start_server(tiny_repo, tmp_path, RELOAD_POLL_SECONDS="0.3")
    try:
        broken = _break_all(tiny_repo)
        expected = 2 * len(broken)  # each version fails once in each of the two workers
        eventually(lambda: metric(server.url, FAILURES) >= expected, what="one failure per version and worker")
        scans = metric(server.url, SCANS)
        eventually(lambda: metric(server.url, SCANS) >= scans + 6, what="three more scans per worker")
        assert metric(server.url, FAILURES) == expected, "a failure was retried though its files did not change"
        assert all(classify(server.url) == (200, "1") for _ in range(10))
        assert requests.get(f"{server.url}/v2/health/ready", timeout=5).status_code == 200
        index = requests.get(f"{server.url}/v2/repository/index", timeout=5).json()
        for version in broken:
            assert {"name": "fashion-mnist", "version": version, "state": "UNAVAILABLE", "reason": "failed to load"} in index
    finally:
        server.stop()
    log = server.output()
    for version in broken:
        assert log.count(f"not serving fashion-mnist/{version}:") == 2, f"version {version} not logged once per worker"
    assert "Traceback" not in log and log.count("Booting worker") == 2, "a worker died and was replaced"


def test_a_fresh_start_with_broken_newest_versions_serves_the_newest_valid_one(tiny_repo, tmp_path, classify):
    _break_all(tiny_repo)
    server = start_server(tiny_repo, tmp_path)
    try:
        assert all(classify(server.url) == (200, "1") for _ in range(6))
    finally:
        server.stop()


def test_a_broken_model_never_stops_reload_of_another(tiny_repo, tmp_path, wait_for_version, metric, eventually):
    publish_tiny(tiny_repo, name="other")
    server = start_server(tiny_repo, tmp_path, RELOAD_POLL_SECONDS="0.3")
    try:
        version = modelrepo.version_dir(tiny_repo, "other", 2)
        version.mkdir()
        (version / "metadata.json").mkdir()  # what made every poll raise before
        eventually(lambda: metric(server.url, FAILURES + '{model="other"}') >= 2, what="other/2 failed")
        publish_tiny(tiny_repo, seed=1)
        wait_for_version(server.url, "2")
    finally:
        server.stop()


def test_the_service_started_as_the_readme_says_shows_the_model_card_images(tmp_path, bundled):
    # `scripts/serve.sh` runs `python -m service` in the project folder with the default
    # MODEL_REPOSITORY=./models, a relative path. Here the folder is a copy of the project's models.
    shutil.copytree(bundled, tmp_path / "models", ignore=shutil.ignore_patterns(".lock", ".reports"))
    server = start_server("./models", tmp_path, cwd=tmp_path)
    try:
        card = requests.get(f"{server.url}/model", timeout=10)
        assert card.status_code == 200
        images = [src for src in __import__("re").findall(r'src="(/model/report/[^"]+)"', card.text)]
        assert any(src.endswith("confusion_matrix.png") for src in images), images
        for src in images:
            response = requests.get(server.url + src, timeout=10)
            assert response.status_code == 200 and response.headers["Content-Type"] == "image/png", src
    finally:
        server.stop()


def test_workers_allocate_from_two_malloc_arenas(server):
    """Sessions are loaded and unloaded by many threads; with glibc's default of an arena per thread
    (up to 8 a core) the freed memory stayed, fragmented: a 5-minute soak grew workers by 12-34%."""
    for pid in server.workers():
        environ = open(f"/proc/{pid}/environ", "rb").read().split(b"\0")
        assert b"MALLOC_ARENA_MAX=2" in environ, f"worker {pid} runs without MALLOC_ARENA_MAX=2"
