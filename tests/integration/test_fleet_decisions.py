"""Operators' decisions reach the fleet: two independent servers (two replicas) on one repository.

A rollback made through either one reaches every worker of both, survives a restart, and is
cleared from the command line; a server that cannot write the repository refuses the decision
with a JSON 409 and changes nothing anywhere.
"""
import subprocess
import sys

import pytest
import requests

import modelrepo
from tests.harness import ROOT, start_server
from tests.tiny_model import publish_tiny

pytestmark = pytest.mark.slow  # several replicas, restarted

NAME = "fashion-mnist"
TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def replicas(tiny_repo, tmp_path):
    """Two servers (replicas A and B) sharing one repository that holds versions 1 and 2."""
    publish_tiny(tiny_repo, seed=1)
    servers = [start_server(tiny_repo, tmp_path, ADMIN_TOKEN=TOKEN, RELOAD_POLL_SECONDS="0.3") for _ in range(2)]
    yield servers
    for server in servers:
        server.stop()


def _admin(server, action: str, version: str | None = None, name: str = NAME) -> requests.Response:
    body = {"parameters": {"version": version}} if version else {}
    return requests.post(f"{server.url}/v2/repository/models/{name}/{action}", json=body, headers=AUTH, timeout=30)


def _all_answer(server, path: str, status: int, answers: int = 12) -> bool:
    return all(requests.get(f"{server.url}{path}", timeout=10).status_code == status for _ in range(answers))


def test_a_rollback_through_one_replica_reaches_every_replica_and_survives_restarts(replicas, tiny_repo, tmp_path,
                                                                                     wait_for_version, eventually):
    a, b = replicas
    wait_for_version(b.url, "2")
    assert _admin(a, "load", "1").json()["version"] == "1"
    wait_for_version(b.url, "1")  # every worker of the other replica
    wait_for_version(a.url, "1")
    assert modelrepo.read_decision(tiny_repo, NAME) == modelrepo.Decision(pinned=1)

    # A replica started afterwards (or restarted) follows the decision from its first answer.
    b.stop()
    c = start_server(tiny_repo, tmp_path, ADMIN_TOKEN=TOKEN, RELOAD_POLL_SECONDS="0.3")
    try:
        wait_for_version(c.url, "1", timeout=5)
        assert _admin(c, "unload").status_code == 200
        eventually(lambda: _all_answer(a, "/v2/health/ready", 503), what="replica A unloaded by C's call")
        assert _admin(a, "load").json()["version"] == "2"  # follow the newest again, everywhere
        wait_for_version(c.url, "2")
    finally:
        c.stop()

    # Cleared from the command line: servers go back to their own setting.
    cleared = subprocess.run([sys.executable, "-m", "modelrepo", "--repository", str(tiny_repo), "decisions", "clear", NAME],
                             cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert cleared.returncode == 0, cleared.stderr
    assert modelrepo.read_decision(tiny_repo, NAME) is None


def test_a_repository_this_server_cannot_write_refuses_decisions_and_changes_nothing(replicas, tiny_repo, wait_for_version):
    a, b = replicas
    wait_for_version(a.url, "2")
    # The model's lock cannot be opened for writing (as on a read-only mount): no decision can be recorded.
    (tiny_repo / NAME / ".lock").unlink(missing_ok=True)
    (tiny_repo / NAME / ".lock").mkdir()
    for answer in (_admin(a, "load", "1"), _admin(b, "unload")):
        assert answer.status_code == 409, answer.text
        assert "cannot record a decision" in answer.json()["error"]
    assert modelrepo.read_decision(tiny_repo, NAME) is None
    for server in (a, b):  # nothing changed on any worker of any replica
        assert _all_answer(server, "/v2/models/fashion-mnist/versions/2/ready", 200)
