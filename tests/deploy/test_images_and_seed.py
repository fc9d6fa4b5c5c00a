"""The images the deploy files run, and how a fresh model volume gets its first model.

- One name per image everywhere: compose builds what Kubernetes runs (fashion-serving:latest,
  fashion-serving:gpu, fashion-trainer:latest), and the Dockerfiles say how to build each.
- CPU and GPU builds install the same onnxruntime version.
- Pods size their threads to their CPU limit.
- deploy/seed-models.sh, which the serving image carries, is run here on real folders: it seeds an
  empty repository with versions that verify, and leaves one holding anything as it is.
"""
from __future__ import annotations

import math
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from modelrepo.store import list_models, list_versions, verify

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
SEED = ROOT / "deploy" / "seed-models.sh"
BUNDLED = ROOT / "models"
SERVICE_DOCKERFILE = ROOT / "service" / "Dockerfile"
IMAGES = {"serving": "fashion-serving:latest", "gpu": "fashion-serving:gpu", "trainer": "fashion-trainer:latest"}


def _docs(*relative: str) -> list[dict]:
    return [d for path in relative for d in yaml.safe_load_all((K8S / path).read_text()) if d]


def _one(docs: list[dict], kind: str) -> dict:
    (doc,) = [d for d in docs if d["kind"] == kind]
    return doc


def _compose(name: str) -> dict:
    return yaml.safe_load((ROOT / name).read_text())["services"]


# --------------------------------------------------------------------------- names and versions


def test_compose_builds_the_images_kubernetes_runs():
    compose, gpu = _compose("docker-compose.yml"), _compose("docker-compose.gpu.yml")
    deployment = _one(_docs("base/deployment.yaml"), "Deployment")["spec"]["template"]["spec"]
    cron = _one(_docs("base/cronjob-retrain.yaml"), "CronJob")["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    gpu_tag = yaml.safe_load((K8S / "overlays/gpu/kustomization.yaml").read_text())["images"][0]["newTag"]
    runtime = _one(_docs("kserve/servingruntime.yaml"), "ServingRuntime")["spec"]

    assert compose["api"]["image"] == IMAGES["serving"]
    assert gpu["api"]["image"] == IMAGES["gpu"] == f"fashion-serving:{gpu_tag}"
    assert compose["trainer"]["image"] == IMAGES["trainer"]
    assert {c["image"] for c in deployment["containers"] + deployment["initContainers"]} == {IMAGES["serving"]}
    assert {c["image"] for c in runtime["containers"]} == {IMAGES["serving"]}
    assert [c["image"] for c in cron["containers"]] == [IMAGES["trainer"]]


@pytest.mark.parametrize(("dockerfile", "image"), [("service/Dockerfile", IMAGES["serving"]),
                                                   ("service/Dockerfile", IMAGES["gpu"]),
                                                   ("training/Dockerfile", IMAGES["trainer"])])
def test_each_dockerfile_says_how_to_build_its_image(dockerfile, image):
    text = (ROOT / dockerfile).read_text()
    assert re.search(rf"^#\s+docker build -f {re.escape(dockerfile)} .*-t {re.escape(image)} \.$", text, re.M), image


def test_cpu_gpu_and_trainer_images_install_the_same_onnxruntime():
    text, trainer = SERVICE_DOCKERFILE.read_text(), (ROOT / "training" / "Dockerfile").read_text()
    (version,) = re.findall(r"^ARG ORT_VERSION=(\S+)$", text, re.M)
    assert re.fullmatch(r"\d+\.\d+\.\d+", version), "an exact version, so both builds get the same one"
    assert '"$ORT_PACKAGE==$ORT_VERSION"' in text, "every build installs ORT_PACKAGE at ORT_VERSION"
    # The gate measures a candidate with the onnxruntime the servers will run it on.
    assert re.findall(r"^ARG ORT_VERSION=(\S+)$", trainer, re.M) == [version] and '"onnxruntime==$ORT_VERSION"' in trainer
    # Compose names the package only: a version there would override the shared one for one build.
    for name in ("docker-compose.yml", "docker-compose.gpu.yml"):
        package = _compose(name)["api"]["build"]["args"]["ORT_PACKAGE"]
        assert re.fullmatch(r"onnxruntime(-gpu(\[[a-z,]+\])?)?", package), f"{name}: {package}"


@pytest.mark.parametrize(("path", "kind"), [("base/deployment.yaml", "Deployment"),
                                            ("kserve/servingruntime.yaml", "ServingRuntime")])
def test_workers_times_threads_fit_the_cpu_limit(path, kind):
    """The service counts the cgroup's quota too (service/cores.py); the manifests say it outright."""
    doc = _one(_docs(path), kind)
    spec = doc["spec"]["template"]["spec"] if kind == "Deployment" else doc["spec"]
    (server,) = [c for c in spec["containers"] if c["name"] in ("server", "kserve-container")]
    env = {e["name"]: e.get("value") for e in server["env"]}
    limit = math.ceil(float(server["resources"]["limits"]["cpu"]))
    assert int(env["WEB_CONCURRENCY"]) * int(env["INTRA_OP_THREADS"]) == limit


# --------------------------------------------------------------------------- seeding the model volume


def test_the_serving_image_carries_the_seed_script_on_its_path():
    copies = re.findall(r"^COPY (?:--\S+ )*(\S+) (\S+)$", SERVICE_DOCKERFILE.read_text(), re.M)
    assert ("deploy/seed-models.sh", "/usr/local/bin/seed-models") in copies
    assert ("models/", "models/") in copies  # WORKDIR /app: the bundled models are /app/models


@pytest.mark.parametrize("pod", ["deployment", "kserve-job"])
def test_the_seed_runs_on_the_claim_the_servers_read_before_they_start(pod):
    if pod == "deployment":
        spec = _one(_docs("base/deployment.yaml"), "Deployment")["spec"]["template"]["spec"]
        (seed,) = spec["initContainers"]  # init containers finish before the server starts
    else:
        spec = _one(_docs("kserve/seed-models-job.yaml"), "Job")["spec"]["template"]["spec"]
        (seed,) = spec["containers"]
    claims = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in spec["volumes"] if "persistentVolumeClaim" in v}
    (mount,) = seed["volumeMounts"]
    assert seed["command"] == ["seed-models", mount["mountPath"], "/app/models"]
    assert claims[mount["name"]] == "models" and not mount.get("readOnly")
    assert spec["securityContext"]["runAsUser"] == 10001 and seed["securityContext"]["readOnlyRootFilesystem"] is True


def _seed(repository: Path, *, bundled: Path = BUNDLED) -> subprocess.CompletedProcess:
    return subprocess.run(["sh", str(SEED), str(repository), str(bundled)], capture_output=True, text=True, timeout=60, check=True)


def _shipped() -> dict[str, list[int]]:
    return {name: list_versions(BUNDLED, name) for name in list_models(BUNDLED)}


@pytest.mark.parametrize("leftover", [None, "lost+found", ".seed-killed-pod-7"])
def test_an_empty_repository_is_seeded_with_versions_that_verify(tmp_path, leftover):
    repository = tmp_path / "claim"
    repository.mkdir()
    if leftover:
        (repository / leftover).mkdir()  # what a fresh ext4 volume holds, or a pod killed while seeding left
    _seed(repository)
    assert {name: list_versions(repository, name) for name in list_models(repository)} == _shipped()
    for name, versions in _shipped().items():
        for version in versions:
            verify(repository, name, version)
    assert {p.name for p in repository.iterdir()} == set(_shipped()) | ({leftover} if leftover else set())


def test_a_repository_holding_anything_is_left_as_it_is(tmp_path):
    repository = tmp_path / "claim"
    shutil.copytree(BUNDLED / "fashion-mnist", repository / "fashion-mnist")
    (repository / "fashion-mnist" / "decisions.json").write_text('{"pinned": 1}')
    before = sorted(str(p.relative_to(repository)) for p in repository.rglob("*"))
    result = _seed(repository)
    assert "left as it is" in result.stdout
    assert sorted(str(p.relative_to(repository)) for p in repository.rglob("*")) == before
    assert "fashion-mnist-int8" not in list_models(repository)


def test_two_pods_seeding_at_once_leave_one_copy_and_no_staging(tmp_path):
    repository = tmp_path / "claim"
    repository.mkdir()
    runs = [subprocess.Popen(["sh", str(SEED), str(repository), str(BUNDLED)], stdout=subprocess.PIPE, text=True)
            for _ in range(2)]
    assert [run.wait(timeout=60) for run in runs] == [0, 0]
    assert sorted(p.name for p in repository.iterdir()) == sorted(_shipped())  # no .seed-* left behind
    for name, versions in _shipped().items():
        assert list_versions(repository, name) == versions
        for version in versions:
            verify(repository, name, version)
