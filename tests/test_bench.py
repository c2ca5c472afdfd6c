"""The benchmark tool: a short smoke run against real servers, and int8 quantization."""

from __future__ import annotations

import io
import json
from dataclasses import replace

import numpy as np
import pytest

from resnet_serve.bench import SERVER_SETUPS, LoadGenerator, ModelFiles, ModelTimes, Point, setup_spec, sweep, table
from resnet_serve.client import TritonClassifier
from resnet_serve.contract import ENSEMBLE_NAME
from resnet_serve.images.preprocess import preprocess_batch
from resnet_serve.model.quantize import agreement, quantize_int8
from resnet_serve.repository import RepositorySpec, write_repository
from resnet_serve.server import ServerSettings, TritonServer
from test_cli import run_cli

from conftest import reference_logits


@pytest.mark.parametrize("processes", [1, 2])
def test_sweep_reports_throughput_latency_server_times_host_cpu_and_the_clients_own(server, images, processes):
    mine = [images["mug_500x375.jpg"], images["mug_tiny.jpg"]]
    generator = LoadGenerator(server.grpc_url, "grpc", mine, processes=processes)
    points = sweep(generator, "ours", [1, 2], seconds=1.0, warmup_s=0.2, progress=False)
    assert [p.concurrency for p in points] == [1, 2]
    for point in points:
        assert point.errors == 0 and point.requests > 0 and point.img_per_s > 0
        assert 0 < point.p50_ms <= point.p99_ms
        assert {"preprocess", "resnet50_ort"} <= set(point.models)
        assert point.models["resnet50_ort"].compute_ms > 0
        assert 0 < point.host_cpu_pct <= 100  # the server and the clients ran on this machine's cores
        # the clients' share of it: some CPU, and at most the cores their processes had
        assert 0 < point.client_cores <= min(processes, point.concurrency) * 1.05


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_every_setup_has_a_spec_whatever_the_device_of_ours(tmp_path, device):
    files = ModelFiles(onnx=tmp_path / "m.onnx", int8_onnx=tmp_path / "m.int8.onnx", torch_weights=tmp_path / "m.pt")
    classifier = "torch" if device == "cuda" else "openvino"
    ours = RepositorySpec(model_file=files.onnx, classifier=classifier, device=device)
    profiles = {setup: setup_spec(setup, ours, files).served_profile for setup in (*SERVER_SETUPS, "in-process")}
    assert (profiles["gpu"], profiles["fused-gpu"], profiles["seed"]) == ("ours", "fused", "seed")
    default = "fused" if device == "cuda" else "ours"
    assert profiles["ours"] == profiles["int8"] == default  # ours's device and classifier: its default
    int8 = replace(ours, precision="int8")  # the CPU setups that take ours's precision serve its model
    assert {setup_spec(setup, int8, files).model_file for setup in ("fused", "in-process")} == {files.int8_onnx}


def test_table_shows_the_steps_of_an_ensemble_and_the_fused_model_itself():
    def point(models: dict[str, ModelTimes]) -> Point:
        return Point("x", 8, 8, 100, 0, 1.0, 800.0, 10.0, 12.0, 15.0, models=models, host_cpu_pct=30.0)

    times = ModelTimes(requests=64, executions=2, queue_ms=1.5, compute_ms=150.0)
    two_step = table([point({ENSEMBLE_NAME: times, "preprocess": times, "resnet50_ort": times})])
    assert "preprocess: 1.5/150.0 b32.0  resnet50_ort: 1.5/150.0 b32.0" in two_step
    assert f"{ENSEMBLE_NAME}:" not in two_step  # its times are the steps' sums
    assert f"{ENSEMBLE_NAME}: 1.5/150.0 b32.0" in table([point({ENSEMBLE_NAME: times})])  # the fused profile


def test_bench_cli_writes_table_json_csv_and_plot(server, onnx_model, images, tmp_path):
    image = tmp_path / "small.jpg"
    image.write_bytes(images["mug_500x375.jpg"])
    out = {name: tmp_path / name for name in ("points.json", "points.csv", "plot.png")}
    result = run_cli(
        "bench", str(image), "--url", server.grpc_url, "--setup", "in-process", "--onnx", str(onnx_model),
        "--concurrency", "1,2", "--seconds", "1", "--warmup", "0.2", "--in-process-batch", "2",
        "--json", str(out["points.json"]), "--csv", str(out["points.csv"]), "--plot", str(out["plot.png"]),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "img/s" in result.stdout and "x in-process" in result.stdout  # the ceiling is the baseline
    points = json.loads(out["points.json"].read_text())
    assert [p["setup"] for p in points] == ["server", "server", "in-process"]
    assert out["points.csv"].read_text().startswith("setup,concurrency")
    assert out["plot.png"].read_bytes()[:4] == b"\x89PNG"


@pytest.mark.server
def test_seed_profile_reproduces_the_seed(tmp_path, onnx_model, model, images):
    # The seed squashes to 224x224 with torchvision; its served logits must match that in-process.
    import torch
    from PIL import Image
    from torchvision import transforms

    repository = write_repository(tmp_path / "seed", RepositorySpec(model_file=onnx_model, profile="seed"))
    with (
        TritonServer(ServerSettings.on_free_ports(repository), log_path=tmp_path / "log") as seed,
        TritonClassifier(seed.grpc_url) as client,
    ):
        served = client.logits([images["mug_500x375.jpg"]])
    squash = transforms.Compose(
        [
            transforms.Resize([224, 224]),
            transforms.ToTensor(),
            transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
        ]
    )

    with torch.inference_mode():
        expected = model(squash(Image.open(io.BytesIO(images["mug_500x375.jpg"])))[None]).numpy()
    np.testing.assert_allclose(served, expected, rtol=0, atol=1e-3)
    assert np.abs(served - reference_logits(model, [images["mug_500x375.jpg"]])).max() > 0.1  # not our crop


def test_int8_quantization_agrees_with_fp32(tmp_path, onnx_model, images):
    batch, errors = preprocess_batch(list(images.values()))
    assert not any(errors)
    int8 = quantize_int8(onnx_model, tmp_path / "resnet50.int8.onnx", batch)
    result = agreement(onnx_model, int8, batch)
    assert result.images == len(images)
    assert 0 <= result.top1_agreement <= 1 and 0 <= result.top5_overlap <= 1
    assert result.logit_correlation > 0.95  # fixed-seed random weights: a loose sanity bound, not accuracy


def test_export_int8_needs_calibration_images():
    result = run_cli("export", "--random-weights", "--int8")
    assert result.returncode == 2 and "--calibration" in result.stderr
