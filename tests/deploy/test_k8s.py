"""Offline checks of the Kubernetes manifests in deploy/k8s.

No cluster, kubectl or kustomize is needed: the kustomizations are rendered by a
small Python subset of kustomize (resources, images, strategic-merge patches),
built-in kinds are validated with kubernetes-validate (strict: unknown fields
fail), CRDs with the hand-written schemas in deploy/k8s/schemas, and the rest are
consistency checks between the manifests and the service's contract.

Two tests import the service itself (`service.settings.ENV_VARS`,
`service.app.create_app`): they fail until that code exists, on purpose.
"""
from __future__ import annotations

import copy
import functools
import importlib
import json
import sys
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml
from referencing import Registry, Resource

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
SCHEMAS = K8S / "schemas"

# Kubernetes version the built-in kinds are validated against (schemas ship with
# kubernetes-validate; see requirements-deploy.txt for its pin).
K8S_VERSION = "1.33"

# CRD kinds -> committed schema; any other apiVersion group must be built in.
CRD_SCHEMAS = {
    ("monitoring.coreos.com/v1", "PodMonitor"): "podmonitor.monitoring.coreos.com_v1.json",
    ("serving.kserve.io/v1beta1", "InferenceService"): "inferenceservice.serving.kserve.io_v1beta1.json",
    ("serving.kserve.io/v1alpha1", "ServingRuntime"): "servingruntime.serving.kserve.io_v1alpha1.json",
}

PORT_DEFAULT = 8000              # service default for PORT
GRACEFUL_TIMEOUT_DEFAULT = 30    # service default for GRACEFUL_TIMEOUT (seconds)
READY_PATH = "/v2/health/ready"
LIVE_PATH = "/v2/health/live"


# --------------------------------------------------------------------------- rendering


def load_yaml(path: Path) -> list[dict]:
    with path.open() as fh:
        return [doc for doc in yaml.safe_load_all(fh) if doc]


def _merge(base, patch):
    """Strategic merge, reduced to what our patches use: maps merge recursively,
    lists of named objects (containers, env, volumes) merge by `name`, any other
    list is replaced, and a null value deletes the key."""
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for key, value in patch.items():
            if value is None:
                out.pop(key, None)
            else:
                out[key] = _merge(out[key], value) if key in out else copy.deepcopy(value)
        return out
    named = lambda items: all(isinstance(i, dict) and "name" in i for i in items)  # noqa: E731
    if isinstance(base, list) and isinstance(patch, list) and base and named(base) and named(patch):
        out = list(base)
        index = {item["name"]: n for n, item in enumerate(out)}
        for item in patch:
            if item["name"] in index:
                out[index[item["name"]]] = _merge(out[index[item["name"]]], item)
            else:
                out.append(copy.deepcopy(item))
        return out
    return copy.deepcopy(patch)


def _containers(node):
    """Every container / initContainer dict anywhere in a manifest."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("containers", "initContainers") and isinstance(value, list):
                yield from value
            else:
                yield from _containers(value)
    elif isinstance(node, list):
        for item in node:
            yield from _containers(item)


def _set_images(docs: list[dict], images: list[dict]) -> None:
    for container in (c for doc in docs for c in _containers(doc)):
        name, _, tag = container["image"].partition(":")  # our images carry no registry port
        for rule in images:
            if rule["name"] == name:
                container["image"] = f"{rule.get('newName', name)}:{rule.get('newTag', tag)}"


SUPPORTED_KUSTOMIZE_KEYS = {"apiVersion", "kind", "resources", "images", "patches"}


@functools.lru_cache(maxsize=None)
def _render(directory: Path) -> tuple[dict, ...]:
    kust = load_yaml(directory / "kustomization.yaml")[0]
    unsupported = set(kust) - SUPPORTED_KUSTOMIZE_KEYS
    assert not unsupported, f"{directory}: teach _render about {unsupported}"
    docs: list[dict] = []
    for ref in kust.get("resources", []):
        path = (directory / ref).resolve()
        docs += copy.deepcopy(list(_render(path))) if path.is_dir() else load_yaml(path)
    for entry in kust.get("patches", []):
        patch = load_yaml(directory / entry["path"])[0]
        target = entry.get("target") or {"kind": patch["kind"], "name": patch["metadata"]["name"]}
        hits = [n for n, d in enumerate(docs)
                if d["kind"] == target["kind"] and d["metadata"]["name"] == target["name"]]
        assert len(hits) == 1, f"patch {entry['path']} matches {len(hits)} resources"
        docs[hits[0]] = _merge(docs[hits[0]], patch)
    _set_images(docs, kust.get("images", []))
    return tuple(docs)


def render(name: str) -> list[dict]:
    return copy.deepcopy(list(_render((K8S / name).resolve())))


def find(docs: list[dict], kind: str, name: str | None = None) -> dict:
    hits = [d for d in docs if d["kind"] == kind and name in (None, d["metadata"]["name"])]
    assert len(hits) == 1, f"expected one {kind} {name or ''}, found {len(hits)}"
    return hits[0]


def container(deployment: dict, name: str = "server") -> dict:
    return next(c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == name)


def env_of(c: dict) -> dict[str, str | None]:
    return {e["name"]: e.get("value") for e in c.get("env", [])}


KUSTOMIZATIONS = ("base", "overlays/gpu", "overlays/postgres", "kserve")
ALL = [(k, doc) for k in KUSTOMIZATIONS for doc in render(k)]
BUILTIN = [(k, d) for k, d in ALL if (d["apiVersion"], d["kind"]) not in CRD_SCHEMAS]
CUSTOM = [(k, d) for k, d in ALL if (d["apiVersion"], d["kind"]) in CRD_SCHEMAS]


def _id(item) -> str:
    k, d = item
    return f"{k}:{d['kind']}/{d['metadata']['name']}"


# --------------------------------------------------------------------------- validation


def test_every_manifest_file_is_rendered():
    """A YAML file no kustomization references would never be applied or tested."""
    referenced = set()
    for kust_path in K8S.rglob("kustomization.yaml"):
        kust = load_yaml(kust_path)[0]
        refs = kust.get("resources", []) + [p["path"] for p in kust.get("patches", [])]
        referenced |= {(kust_path.parent / r).resolve() for r in refs}
    manifests = {p.resolve() for p in K8S.rglob("*.yaml") if p.name != "kustomization.yaml"}
    assert manifests - referenced == set()
    # ...and every kustomization is rendered by these tests.
    assert {p.parent.resolve() for p in K8S.rglob("kustomization.yaml")} <= {
        (K8S / k).resolve() for k in KUSTOMIZATIONS}


@pytest.mark.parametrize("item", BUILTIN, ids=_id)
def test_builtin_kinds_validate_strictly(item):
    _, doc = item
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def _crd_registry() -> Registry:
    resources = []
    for path in SCHEMAS.glob("*.json"):
        schema = json.loads(path.read_text())
        jsonschema.Draft202012Validator.check_schema(schema)
        resources.append((schema["$id"], Resource.from_contents(schema)))
    return Registry().with_resources(resources)


@pytest.mark.parametrize("item", CUSTOM, ids=_id)
def test_custom_resources_match_committed_schemas(item):
    _, doc = item
    schema = json.loads((SCHEMAS / CRD_SCHEMAS[doc["apiVersion"], doc["kind"]]).read_text())
    jsonschema.Draft202012Validator(schema, registry=_crd_registry()).validate(doc)


def test_crd_schemas_reject_wrong_documents():
    """The hand-written schemas must actually constrain something."""
    isvc = copy.deepcopy(find(render("kserve"), "InferenceService"))
    isvc["spec"]["predictor"]["model"]["protocolVersion"] = "v3"
    schema = json.loads((SCHEMAS / CRD_SCHEMAS["serving.kserve.io/v1beta1", "InferenceService"]).read_text())
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(schema, registry=_crd_registry()).validate(isvc)


def test_serving_runtime_pod_parts_validate_as_a_pod():
    """A ServingRuntime embeds core containers/volumes; check them with the Pod schema."""
    runtime = find(render("kserve"), "ServingRuntime")
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "runtime-check"},
           "spec": {"containers": runtime["spec"]["containers"],
                    "volumes": runtime["spec"].get("volumes", [])}}
    kubernetes_validate.validate(pod, K8S_VERSION, strict=True)


def test_base_is_namespace_agnostic():
    for _, doc in ALL:
        assert "namespace" not in doc["metadata"], _id((_, doc))


# --------------------------------------------------------------------------- consistency


@pytest.mark.parametrize("variant", ["base", "overlays/gpu"])
def test_port_probes_and_service_agree(variant):
    docs = render(variant)
    deploy = find(docs, "Deployment", "fashion-serving")
    server = container(deploy)
    ports = {p["name"]: p["containerPort"] for p in server["ports"]}
    assert ports == {"http": PORT_DEFAULT}
    assert int(env_of(server).get("PORT") or PORT_DEFAULT) == PORT_DEFAULT

    assert server["readinessProbe"]["httpGet"] == {"path": READY_PATH, "port": "http"}
    assert server["livenessProbe"]["httpGet"] == {"path": LIVE_PATH, "port": "http"}
    assert server["startupProbe"]["httpGet"]["port"] == "http"

    svc = find(docs, "Service", "fashion-serving")
    assert svc["spec"]["ports"] == [{"name": "http", "port": PORT_DEFAULT, "targetPort": "http", "protocol": "TCP"}]
    monitor = find(docs, "PodMonitor")
    assert [e["port"] for e in monitor["spec"]["podMetricsEndpoints"]] == ["http"]
    assert monitor["spec"]["podMetricsEndpoints"][0]["path"] == "/metrics"


def _grace_needed(c: dict) -> int:
    graceful = int(env_of(c).get("GRACEFUL_TIMEOUT") or GRACEFUL_TIMEOUT_DEFAULT)
    cmd = c["lifecycle"]["preStop"]["exec"]["command"]
    assert cmd[0] == "sleep" and len(cmd) == 2, cmd
    return graceful + int(cmd[1])


@pytest.mark.parametrize("variant", ["base", "overlays/gpu"])
def test_termination_grace_covers_prestop_and_graceful_timeout(variant):
    deploy = find(render(variant), "Deployment", "fashion-serving")
    pod = deploy["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] >= _grace_needed(container(deploy))


def test_kserve_grace_covers_prestop_and_graceful_timeout():
    docs = render("kserve")
    runtime_container = find(docs, "ServingRuntime")["spec"]["containers"][0]
    predictor = find(docs, "InferenceService")["spec"]["predictor"]
    assert predictor["terminationGracePeriodSeconds"] >= _grace_needed(runtime_container)


def _mounts(c: dict, pod: dict) -> dict[str, tuple[dict, dict]]:
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    return {m["mountPath"]: (m, volumes[m["name"]]) for m in c.get("volumeMounts", [])}


@pytest.mark.parametrize("variant", ["base", "overlays/gpu"])
def test_serving_pod_is_locked_down(variant):
    deploy = find(render(variant), "Deployment", "fashion-serving")
    pod = deploy["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    sc = container(deploy)["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    for c in pod["containers"]:
        assert {"cpu", "memory"} <= set(c["resources"]["requests"]) and {"cpu", "memory"} <= set(c["resources"]["limits"])


@pytest.mark.parametrize("variant", ["base", "overlays/gpu"])
def test_writable_paths_are_empty_dirs_and_the_repository_is_shared(variant):
    docs = render(variant)
    deploy = find(docs, "Deployment", "fashion-serving")
    pod, server = deploy["spec"]["template"]["spec"], container(deploy)
    mounts, env = _mounts(server, pod), env_of(server)
    # The root fs is read-only, so /tmp and the metrics dir must be emptyDirs.
    for path in ("/tmp", env["PROMETHEUS_MULTIPROC_DIR"]):
        assert "emptyDir" in mounts[path][1], path
    mount, volume = mounts[env["MODEL_REPOSITORY"]]
    assert env["MODEL_REPOSITORY"] == "/app/models"
    # Writable: admin load/unload record operators' decisions in the repository, where every
    # replica and the retraining CronJob read them (a read-only mount answers them 409).
    assert not mount.get("readOnly") and not volume["persistentVolumeClaim"].get("readOnly")
    find(docs, "PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"])


def test_selectors_pick_the_serving_pods_only():
    docs = render("base")
    deploy = find(docs, "Deployment", "fashion-serving")
    pod_labels = deploy["spec"]["template"]["metadata"]["labels"]
    trainer_labels = find(docs, "CronJob")["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]
    selectors = [deploy["spec"]["selector"]["matchLabels"],
                 find(docs, "Service")["spec"]["selector"],
                 find(docs, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"],
                 find(docs, "PodMonitor")["spec"]["selector"]["matchLabels"]]
    for selector in selectors:
        assert selector.items() <= pod_labels.items()
        assert not selector.items() <= trainer_labels.items()
    target = find(docs, "HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", "fashion-serving")
    # HPA owns the replica count; CPU utilisation is a share of the CPU request.
    assert "replicas" not in deploy["spec"]
    assert "cpu" in container(deploy)["resources"]["requests"]


def test_retrain_cronjob_writes_the_repository_the_servers_read():
    docs = render("base")
    cron = find(docs, "CronJob", "fashion-retrain")
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    trainer = pod["containers"][0]
    assert trainer["image"].startswith("fashion-trainer:")
    args = trainer["args"]
    assert args[0] == "retrain"
    opts = dict(zip(args[1::2], args[2::2]))
    assert float(opts["--min-accuracy"]) == 0.90 and float(opts["--significance"]) == 0.05
    mount, volume = _mounts(trainer, pod)[opts["--repository"]]
    assert not mount.get("readOnly") and not volume["persistentVolumeClaim"].get("readOnly")

    server = container(find(docs, "Deployment", "fashion-serving"))
    server_claim = _mounts(server, find(docs, "Deployment")["spec"]["template"]["spec"])["/app/models"][1]
    assert volume["persistentVolumeClaim"]["claimName"] == server_claim["persistentVolumeClaim"]["claimName"]
    assert opts["--model-name"] == env_of(server)["MODEL_NAME"]
    # A writer plus readers on other nodes need a ReadWriteMany claim (see README).
    pvc = find(docs, "PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"])
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]


def test_retrain_cronjob_runs_the_scheduled_recipe_against_the_served_version():
    from training.__main__ import build_parser

    docs = render("base")
    trainer = find(docs, "CronJob", "fashion-retrain")["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    # The real CLI parser reads the args: the job trains exactly the documented recipe,
    # warm-started from the served version (the `retrain` defaults, spelled out).
    parsed = build_parser().parse_args(trainer["args"])
    assert parsed.init_from == "served" and "--init-from" in trainer["args"]
    # The hyperparameters are the job's own defaults (RETRAIN_PRODUCTION with a store): none spelled out.
    for option in ("epochs", "learning_rate", "ema_momentum", "patience", "production_share"):
        assert getattr(parsed, option) is None, option
    assert parsed.min_new_labels >= 1
    assert find(docs, "CronJob", "fashion-retrain")["spec"]["schedule"] == "0 3 * * *"  # daily: most days, nothing to do
    # A rollback pin on the servers must reach the job too, and the store they write.
    server = container(find(docs, "Deployment", "fashion-serving"))
    assert "MODEL_VERSION" in env_of(trainer)
    assert env_of(trainer)["MODEL_VERSION"] == env_of(server)["MODEL_VERSION"]
    entries = [{e["name"]: e for e in c["env"]}["CAPTURE_URL"] for c in (trainer, server)]
    assert entries[0] == entries[1] and entries[0]["valueFrom"]["secretKeyRef"]["optional"] is True


def test_gpu_overlay_patches_only_the_device():
    base, gpu = render("base"), render("overlays/gpu")
    server_base = container(find(base, "Deployment"))
    server_gpu = container(find(gpu, "Deployment"))
    assert server_gpu["image"] == "fashion-serving:gpu"
    assert server_gpu["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert env_of(server_gpu)["DEVICE"] == "cuda"
    # The patch merges: everything it does not mention is kept.
    assert env_of(server_gpu).keys() == env_of(server_base).keys()
    assert server_gpu["startupProbe"]["httpGet"] == server_base["startupProbe"]["httpGet"]
    assert server_gpu["volumeMounts"] == server_base["volumeMounts"]
    assert find(gpu, "CronJob") == find(base, "CronJob")
    assert [d["kind"] for d in gpu] == [d["kind"] for d in base]


def test_kserve_predictor_uses_our_runtime_with_protocol_v2():
    docs = render("kserve")
    runtime = find(docs, "ServingRuntime")
    predictor = find(docs, "InferenceService")["spec"]["predictor"]
    model = predictor["model"]
    assert model["runtime"] == runtime["metadata"]["name"]
    assert model["protocolVersion"] == "v2" and "v2" in runtime["spec"]["protocolVersions"]
    assert model["modelFormat"]["name"] in {f["name"] for f in runtime["spec"]["supportedModelFormats"]}
    assert predictor["minReplicas"] <= predictor["maxReplicas"]
    # pvc://<claim>[/path]: the claim must be the base one.
    claim = model["storageUri"].removeprefix("pvc://").split("/")[0]
    find(render("base"), "PersistentVolumeClaim", claim)

    c = runtime["spec"]["containers"][0]
    assert c["image"].startswith("fashion-serving:")
    assert env_of(c)["MODEL_REPOSITORY"] == "/mnt/models"  # where KServe mounts storageUri
    assert [p["containerPort"] for p in c["ports"]] == [int(env_of(c)["PORT"])] == [PORT_DEFAULT]
    assert c["readinessProbe"]["httpGet"]["path"] == READY_PATH
    assert c["livenessProbe"]["httpGet"]["path"] == LIVE_PATH


# --------------------------------------------------------------------------- against the service code
# These two need service/ (settings.ENV_VARS and app.create_app); they fail until it lands.


def _import_service(module: str):
    if str(ROOT) not in sys.path:  # plain `pytest` may not put the repo root on sys.path
        sys.path.insert(0, str(ROOT))
    return importlib.import_module(module)


def test_manifest_env_vars_are_read_by_the_service():
    allowed = set(_import_service("service.settings").ENV_VARS)
    serving_containers = [container(find(render(v), "Deployment", "fashion-serving"))
                          for v in ("base", "overlays/gpu")]
    serving_containers += find(render("kserve"), "ServingRuntime")["spec"]["containers"]
    used = {name for c in serving_containers for name in env_of(c)}
    assert used - allowed == set(), "env vars the service never reads (typo?)"


def test_probe_paths_exist_in_the_app(monkeypatch, tmp_path):
    monkeypatch.setenv("MODEL_REPOSITORY", str(tmp_path))  # an empty repository: routes only
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    app = _import_service("service.app").create_app()
    rules = {r.rule: r.methods for r in app.url_map.iter_rules()}
    for path in (READY_PATH, LIVE_PATH, "/metrics"):
        assert path in rules and "GET" in rules[path], path
