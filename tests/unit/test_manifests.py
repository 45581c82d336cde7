"""The Kubernetes manifests validate against the API schemas, with the GPU overlay applied too.

kustomize is not needed: each resource is validated on its own, and the overlay's patch is
merged the way a strategic merge patch merges (lists of named items by name).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.speech import REPO

K8S = REPO / "deploy" / "k8s"
VERSION = "1.30.0"


def _documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _resources(folder: Path) -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    docs = []
    for entry in kustomization.get("resources", []):
        target = folder / entry
        docs += _resources(target) if target.is_dir() else _documents(target)
    for patch in kustomization.get("patches", []):
        for change in _documents(folder / patch["path"]):
            base = next(
                d
                for d in docs
                if (d["kind"], d["metadata"]["name"]) == (change["kind"], change["metadata"]["name"])
            )
            _merge(base, change)
    for doc in docs:
        doc["metadata"].setdefault("namespace", kustomization.get("namespace"))
    return docs


def _merge(base: dict[str, Any], change: dict[str, Any]) -> None:
    for key, value in change.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        elif isinstance(value, list) and all(isinstance(v, dict) and "name" in v for v in value):
            items = base.setdefault(key, [])
            for item in value:
                match = next((i for i in items if i.get("name") == item["name"]), None)
                if match is None:
                    items.append(copy.deepcopy(item))
                else:
                    _merge(match, item)
        else:
            base[key] = copy.deepcopy(value)


@pytest.mark.parametrize("overlay", ["base", "gpu"])
def test_every_resource_validates(overlay: str) -> None:
    docs = _resources(K8S / overlay)
    assert docs
    for doc in docs:
        kubernetes_validate.validate(doc, VERSION, strict=True)


def _deployments(overlay: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in _resources(K8S / overlay) if d["kind"] == "Deployment"}


def test_each_service_has_probes_limits_autoscaling_a_budget_and_a_locked_down_pod() -> None:
    docs = _resources(K8S / "base")
    kinds = {(d["kind"], d["metadata"]["name"]) for d in docs}
    for name in ("stt", "llm", "tts"):
        assert {("Deployment", name), ("Service", name), ("Service", f"{name}-headless")} <= kinds
        assert {("HorizontalPodAutoscaler", name), ("PodDisruptionBudget", name)} <= kinds
        pod = _deployments("base")[name]["spec"]["template"]["spec"]
        (container,) = pod["containers"]
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
    headless = next(d for d in docs if d["metadata"]["name"] == "stt-headless")
    assert headless["spec"]["clusterIP"] == "None"


def test_the_gpu_variant_asks_for_a_gpu_for_speech_to_text_only() -> None:
    gpu = _deployments("gpu")
    (stt,) = gpu["stt"]["spec"]["template"]["spec"]["containers"]
    assert stt["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert {"name": "STT_DEVICE", "value": "cuda"} in stt["env"]
    assert gpu["stt"]["spec"]["template"]["spec"]["nodeSelector"]
    for name in ("llm", "tts"):
        (container,) = gpu[name]["spec"]["template"]["spec"]["containers"]
        assert "nvidia.com/gpu" not in container["resources"]["limits"]


def test_no_secret_is_committed_in_the_manifests() -> None:
    for path in K8S.rglob("*.yaml"):
        for doc in _documents(path):
            assert doc.get("kind") != "Secret", f"{path} holds a Secret; generate it from files instead"
