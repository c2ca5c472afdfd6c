"""The resnet-serve command line, run as users run it (subprocesses, a real server)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from resnet_serve.weights import WEIGHTS_ENV, pretrained_cached, pretrained_weights

from conftest import DATA_DIR

COMMANDS = ["demo", "export", "engine", "repo", "serve", "classify", "bench"]


def run_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "resnet_serve.cli", *args], capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help_explains_every_command(command):
    result = run_cli(*([command] if command else []), "--help")
    assert result.returncode == 0, result.stderr
    assert "usage: resnet-serve" in result.stdout
    if command is None:
        assert all(name in result.stdout for name in COMMANDS)


def test_classify_json_over_http(server, images, tmp_path):
    paths = []
    for name in ("mug_500x375.jpg", "mug_gray.png"):
        (tmp_path / name).write_bytes(images[name])
        paths.append(str(tmp_path / name))
    result = run_cli("classify", *paths, "--protocol", "http", "--url", server.http_url, "--top-k", "3", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert [entry["image"] for entry in report["images"]] == paths
    assert all(len(entry["top"]) == 3 for entry in report["images"])
    assert report["latency_ms"] > 0


def test_classify_reports_a_bad_image_without_a_traceback(server, tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"nope")
    result = run_cli("classify", str(bad), "--url", server.grpc_url)
    assert result.returncode == 1
    assert "image 0: not a recognised image format" in result.stderr and "Traceback" not in result.stderr


def test_serve_without_a_repository_says_what_to_do(tmp_path):
    result = run_cli("serve", "--repository", str(tmp_path / "missing"))
    assert result.returncode == 2 and "resnet-serve repo" in result.stderr


@pytest.mark.server
def test_demo_end_to_end(model, onnx_model, images, tmp_path):
    # Reuse the session's export (same fixed-seed weights) so the demo skips the 12 s export step.
    import torch

    workdir = tmp_path / "work"
    workdir.mkdir()
    shutil.copyfile(onnx_model, workdir / "resnet50.onnx")
    torch.save(model.state_dict(), workdir / "resnet50.pt")
    (workdir / "resnet50.json").write_text(json.dumps({"weights": "random weights (seed 0)"}))
    image = tmp_path / "mug.jpg"
    image.write_bytes(images["mug.jpg"])
    result = run_cli("demo", str(image), "--random-weights", "--workdir", str(workdir))
    assert result.returncode == 0, result.stderr
    assert "Reusing" in result.stderr and "meaningless" in result.stderr
    assert "1. " in result.stdout and "5. " in result.stdout and "(class " in result.stdout
    assert "Stopping tritonserver: done" in result.stderr


def _real_weights() -> str | None:
    import os

    return os.environ.get(WEIGHTS_ENV) or (str(pretrained_cached()) if pretrained_cached() else None)


@pytest.mark.server
@pytest.mark.skipif(
    _real_weights() is None,
    reason=f"no real ImageNet weights here: set {WEIGHTS_ENV}=FILE or put {pretrained_weights('resnet50')} in "
    "torchvision's cache",
)
@pytest.mark.skipif(not (DATA_DIR / "mug.jpg").is_file(), reason=f"the example's photo is not in {DATA_DIR}")
def test_mug_is_a_coffee_mug_with_real_weights(images, tmp_path):
    image = tmp_path / "mug.jpg"
    image.write_bytes(images["mug.jpg"])
    result = run_cli("demo", str(image), "--weights", _real_weights(), "--workdir", str(tmp_path / "work"), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["images"][0]["top"][0]["label"] == "COFFEE MUG"
