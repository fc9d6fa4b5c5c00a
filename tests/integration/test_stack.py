"""The stack, natively: the service, a real Prometheus with the committed config, and the retraining job.

The compose file runs these same entrypoints in containers; here the only change is where
Prometheus finds the service (loopback instead of Docker DNS).
"""
import subprocess
import sys

import pytest
import requests
import yaml

from tests.prometheus import prometheus, query
from tests.harness import ROOT, start_server

pytestmark = pytest.mark.slow  # trains with TensorFlow, with Prometheus

COMMITTED = ROOT / "deploy" / "prometheus"


def _loopback_config(target: str) -> dict:
    config = yaml.safe_load((COMMITTED / "prometheus.yml").read_text())
    config["rule_files"] = [str(COMMITTED / name) for name in config["rule_files"]]
    api = next(job for job in config["scrape_configs"] if job["job_name"] == "api")
    api.pop("dns_sd_configs")
    api["static_configs"] = [{"targets": [target]}]
    return config


def test_retrain_is_served_and_seen_by_prometheus(bundled_repo, tmp_path, wait_for_version):
    before = max(int(p.name) for p in (bundled_repo / "fashion-mnist").iterdir() if p.name.isdigit())
    server = start_server(bundled_repo, tmp_path, RELOAD_POLL_SECONDS="1")
    try:
        target = server.url.removeprefix("http://")
        with prometheus(tmp_path, [target], _loopback_config(target)) as prom:
            assert query(prom, f'serving_model_info{{model="fashion-mnist",version="{before}"}} == 1')
            job = subprocess.run(
                [sys.executable, "-m", "training", "retrain", "--repository", str(bundled_repo), "--epochs", "1",
                 "--limit", "512", "--batch-size", "64", "--min-accuracy", "0", "--significance", "0"],
                cwd=ROOT, capture_output=True, text=True, timeout=600)
            assert job.returncode == 0, job.stdout + job.stderr[-3000:]
            new = str(before + 1)
            wait_for_version(server.url, new, timeout=60)
            seen = query(prom, f'serving_model_info{{model="fashion-mnist",version="{new}"}} == 1', wait_s=30)
            assert seen, "Prometheus never saw the new version"
            rules = requests.get(f"{prom}/api/v1/rules", timeout=5).json()["data"]["groups"]
            assert rules, "the committed alert rules did not load"
    finally:
        server.stop()
