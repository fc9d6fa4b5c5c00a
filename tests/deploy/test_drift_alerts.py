"""The model-quality alerts (deploy/prometheus/alerts.yml), unit-tested by promtool on synthetic series.

deploy/prometheus/alerts.test.yml fires each rule on shifted series and keeps it silent on
series drawn from the reference and under its minimum of traffic or labels.
"""
from __future__ import annotations

import shutil
import subprocess

import yaml

from tests.harness import ROOT

RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
TESTS = ROOT / "deploy" / "prometheus" / "alerts.test.yml"
QUALITY_ALERTS = {"ModelClassMixDrift", "ModelConfidenceDrop", "ModelLiveAccuracyLow", "ServingCapturesDropped"}


def test_each_quality_alert_fires_on_drift_and_stays_silent_without_it():
    promtool = shutil.which("promtool")
    assert promtool, "promtool not found (scripts/setup.sh installs the Debian prometheus package)"
    result = subprocess.run([promtool, "test", "rules", str(TESTS)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_quality_alert_is_tested_both_ways():
    rules = {rule["alert"] for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]}
    assert QUALITY_ALERTS <= rules
    cases = [case for test in yaml.safe_load(TESTS.read_text())["tests"] for case in test["alert_rule_test"]]
    fired = {case["alertname"] for case in cases if case["exp_alerts"]}
    silent = {case["alertname"] for case in cases if not case["exp_alerts"]}
    assert QUALITY_ALERTS - {"ServingCapturesDropped"} <= fired & silent and "ServingCapturesDropped" in fired
