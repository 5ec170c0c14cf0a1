"""The Kubernetes manifests as `kubectl kustomize` renders them (base and production overlay), validated offline
against the Kubernetes schemas (kubernetes-validate, strict: no unknown field), then checked for what the
fleet relies on: probes on /ready and /health, resources, the HPA and PDB on the API's pods, the NetworkPolicy
on them, every Secret and ConfigMap key a pod reads present."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"
KUBERNETES_VERSION = "1.32.0"
RENDERS = ["base", "overlays/production"]


def _render(target: str) -> list[dict[str, Any]]:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed (it renders the Kustomize manifests; .ci/run installs it with apt)")
    out = subprocess.run(["kubectl", "kustomize", str(K8S / target)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def _one(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} in the render"
    return found[0]


@pytest.mark.parametrize("target", RENDERS)
def test_every_rendered_manifest_validates_against_the_kubernetes_schemas(target: str) -> None:
    docs = _render(target)
    assert len(docs) >= 10
    for doc in docs:
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            where = f"{doc['kind']}/{doc['metadata']['name']}"
            raise AssertionError(f"{where}: {exc.message} at {list(exc.path)}") from None


@pytest.mark.parametrize("target", RENDERS)
def test_the_api_deployment_is_probed_sized_scaled_protected_and_fenced(target: str) -> None:
    docs = _render(target)
    api = _one(docs, "Deployment", "aisle-api")
    pod = api["spec"]["template"]
    labels = pod["metadata"]["labels"]
    assert api["spec"]["selector"]["matchLabels"].items() <= labels.items()
    (container,) = pod["spec"]["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert {"cpu", "memory"} <= container["resources"]["requests"].keys()
    assert "memory" in container["resources"]["limits"]
    assert pod["spec"]["securityContext"]["runAsNonRoot"]

    hpa = _one(docs, "HorizontalPodAutoscaler", "aisle-api")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "aisle-api"}
    assert 2 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
    pdb = _one(docs, "PodDisruptionBudget", "aisle-api")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert pdb["spec"]["minAvailable"] < hpa["spec"]["minReplicas"], "the PDB would block every node drain"
    policy = _one(docs, "NetworkPolicy", "aisle-api")
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= labels.items()
    assert set(policy["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    service = _one(docs, "Service", "aisle-api")
    assert service["spec"]["selector"].items() <= labels.items()


@pytest.mark.parametrize("target", RENDERS)
def test_every_config_and_secret_key_a_pod_reads_exists_and_every_service_it_names_is_there(target: str) -> None:
    docs = _render(target)
    data = {(d["kind"], d["metadata"]["name"]): {**d.get("data", {}), **d.get("stringData", {})}
            for d in docs if d["kind"] in ("ConfigMap", "Secret")}
    pods = [d["spec"]["template"]["spec"] for d in docs if d["kind"] in ("Deployment", "StatefulSet")]
    pods += [d["spec"]["template"]["spec"] for d in docs if d["kind"] == "Job"]
    for pod in pods:
        for container in pod.get("initContainers", []) + pod["containers"]:
            for env in container.get("env", []):
                ref = env.get("valueFrom", {})
                for kind, key in (("ConfigMap", "configMapKeyRef"), ("Secret", "secretKeyRef")):
                    if key in ref:
                        assert ref[key]["key"] in data[(kind, ref[key]["name"])], (container["name"], ref)
            for source in container.get("envFrom", []):
                assert ("ConfigMap", source["configMapRef"]["name"]) in data
    config = data[("ConfigMap", "aisle-config")]
    services = {d["metadata"]["name"] for d in docs if d["kind"] == "Service"}
    for url in (config["AISLE_STATE"], config["AISLE_STORE"]):
        host = url.split("@")[-1].split("//")[-1].split(":")[0].split("/")[0]
        assert host in services, f"{url} names {host}, which is no Service of the render"
    claims = {d["metadata"]["name"] for d in docs if d["kind"] == "PersistentVolumeClaim"}
    for pod in pods:
        for volume in pod.get("volumes", []):
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in claims
