"""The repository API: a token, decisions every worker follows, and failed decisions that change nothing."""
import re
import subprocess
import threading

import pytest
import requests

from tests.harness import ROOT, start_server
from tests.tiny_model import publish_tiny

pytestmark = pytest.mark.slow  # a server a test: 40 s (the API is also tested in-process, tests/unit/test_app.py)

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def admin_server(tiny_repo, tmp_path):
    """Two versions of fashion-mnist and one of `other`, the API enabled, polling every 0.3 s."""
    publish_tiny(tiny_repo, seed=1)
    publish_tiny(tiny_repo, name="other")
    server = start_server(tiny_repo, tmp_path, ADMIN_TOKEN=TOKEN, RELOAD_POLL_SECONDS="0.3")
    yield server
    server.stop()


def _post(server, path, **kwargs):
    return requests.post(f"{server.url}/v2/repository/models/{path}", timeout=30, **kwargs)


def _every_worker(server, path: str, expected: int, answers: int = 12) -> bool:
    """`answers` requests in a row all got `expected` (both workers answer a dozen requests)."""
    return all(requests.get(f"{server.url}{path}", timeout=10).status_code == expected for _ in range(answers))


def test_the_api_needs_a_token(tiny_repo, tmp_path):
    disabled = start_server(tiny_repo, tmp_path)
    try:
        assert requests.post(f"{disabled.url}/v2/repository/models/fashion-mnist/load", timeout=5).status_code == 403
    finally:
        disabled.stop()
    server = start_server(tiny_repo, tmp_path, ADMIN_TOKEN=TOKEN)
    try:
        assert _post(server, "fashion-mnist/load").status_code == 401
        assert _post(server, "fashion-mnist/load", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert _post(server, "nope/load", headers=AUTH).status_code == 404
    finally:
        server.stop()


def _readme_admin_commands() -> list[str]:
    """The rollback commands of docs/operations.md, exactly as a reader would paste them."""
    commands = [line.strip() for line in (ROOT / "docs/operations.md").read_text().splitlines() if line.strip().startswith("curl -X POST")]
    assert len(commands) >= 2 and all("/v2/repository/models/fashion-mnist/" in c for c in commands), commands
    return commands


def test_the_documented_rollback_commands_work_verbatim(admin_server, wait_for_version):
    pin, follow = _readme_admin_commands()[:2]
    address = admin_server.url.removeprefix("http://")

    def run(command: str) -> str:
        # Verbatim but for the address: the test server listens on a free port, not 8000.
        result = subprocess.run(["bash", "-c", command.replace("localhost:8000", address)], capture_output=True, text=True,
                                timeout=30, env={"PATH": "/usr/bin:/bin", "ADMIN_TOKEN": TOKEN})
        assert result.returncode == 0, result.stderr
        return result.stdout

    wait_for_version(admin_server.url, "2")
    assert '"version":"1"' in run(pin).replace(" ", "")
    wait_for_version(admin_server.url, "1")  # every worker, not only the one that took the call
    assert '"version":"2"' in run(follow).replace(" ", "")
    wait_for_version(admin_server.url, "2")


def test_unload_then_load_and_every_worker_follows(admin_server, classify, wait_for_version, eventually):
    assert _post(admin_server, "fashion-mnist/unload", headers=AUTH).status_code == 200
    eventually(lambda: _every_worker(admin_server, "/v2/health/ready", 503), what="every worker unloaded")
    assert classify(admin_server.url)[0] == 503
    assert _post(admin_server, "fashion-mnist/load", headers=AUTH).json()["version"] == "2"
    wait_for_version(admin_server.url, "2")


def test_a_failed_load_changes_nothing_on_any_worker(admin_server, tiny_repo, wait_for_version):
    # Version 3 exists but cannot load; the call fails, and the workers keep following the newest.
    (tiny_repo / "fashion-mnist" / "3").mkdir()
    answer = _post(admin_server, "fashion-mnist/load", json={"parameters": {"version": "3"}}, headers=AUTH)
    assert answer.status_code == 400 and "cannot load fashion-mnist/3" in answer.json()["error"]
    assert _post(admin_server, "fashion-mnist/load", json={"parameters": {"version": "99"}}, headers=AUTH).status_code == 404
    publish_tiny(tiny_repo, seed=4)  # version 4: a worker left pinned to 3 or 99 would not move
    wait_for_version(admin_server.url, "4", timeout=30)


def _at_once(server, *calls: tuple[str, dict | None]) -> None:
    """Send the admin calls at the same moment (from threads behind a barrier); each must succeed."""
    barrier = threading.Barrier(len(calls))

    def call(path, body):
        barrier.wait()
        assert _post(server, path, json=body, headers=AUTH).status_code == 200

    threads = [threading.Thread(target=call, args=c) for c in calls]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def test_concurrent_decisions_on_different_models_all_hold(admin_server, eventually):
    for trial in range(3):
        _at_once(admin_server, ("other/unload", None), ("fashion-mnist/load", {"parameters": {"version": "1"}}))
        eventually(lambda: _every_worker(admin_server, "/v2/models/other/ready", 503)
                   and _every_worker(admin_server, "/v2/models/fashion-mnist/versions/1/ready", 200),
                   what=f"both decisions on every worker (trial {trial + 1})")
        # Undo both, again at the same time, before the next trial.
        _at_once(admin_server, ("other/load", None), ("fashion-mnist/load", None))
        eventually(lambda: _every_worker(admin_server, "/v2/models/other/ready", 200)
                   and _every_worker(admin_server, "/v2/models/fashion-mnist/versions/2/ready", 200),
                   what=f"both undone on every worker (trial {trial + 1})")


def test_a_body_that_is_not_json_is_refused_not_ignored(admin_server):
    # What the README's old command sent: curl -d defaults to a form content type.
    answer = _post(admin_server, "fashion-mnist/load", data='{"parameters": {"version": "1"}}', headers=AUTH)
    assert answer.status_code == 415 and "application/json" in answer.json()["error"]
    assert re.search(r"version", _post(admin_server, "fashion-mnist/unload", json={"parameters": {"version": "1"}}, headers=AUTH).text)
