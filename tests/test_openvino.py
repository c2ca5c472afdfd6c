"""The OpenVINO classifier: precision chosen by the chip, what the repository records, bounded memory,
and served logits against the torch reference with a stated tolerance per precision."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from resnet_serve.client import TritonClassifier
from resnet_serve.host import available_cores, classifier_share
from resnet_serve.images.preprocess import preprocess_image
from resnet_serve.model.agreement import logit_agreement
from resnet_serve.openvino_classifier import (
    OpenVinoClassifier,
    PrecisionError,
    cpu_capabilities,
    resolve_precision,
)
from resnet_serve.repository import RepositorySpec, read_config, read_marker, write_repository
from resnet_serve.runtimes import RUNTIMES
from resnet_serve.server import ServerSettings, TritonServer

from conftest import EXACT, reference_logits, tiny_onnx

HAS_BF16 = "BF16" in cpu_capabilities()
needs_bf16 = pytest.mark.skipif(not HAS_BF16, reason="this CPU has no bf16 (avx512_bf16 or AMX)")

# Served logits against torch, as the largest difference over the image's largest |logit| (the fixed-seed
# random ResNet-50's logits reach ~60). Measured in process on these 6 images, EXACT preprocessing:
#   fp32: 3.0e-5 (OpenVINO's fused kernels sum in another order; preprocess roundings as in test_server.py)
#   bf16: 0.50% (bf16 weights and activations, fp32 accumulation)
#   int8: 1.7% (ONNX Runtime's QDQ model calibrated on the same 6 images, run by OpenVINO's int8 kernels)
# Each bound is ~3x its measurement; top-1 must agree at every precision.
RELATIVE_TOLERANCE = {"fp32": 1e-4, "bf16": 1.5e-2, "int8": 5e-2}
SERVED = ["mug.jpg", "mug_500x375.jpg", "mug_gray.png", "mug_cmyk.jpg", "mug_rgba.png", "mug_tiny.jpg"]


def relative_difference(actual: np.ndarray, expected: np.ndarray) -> float:
    return logit_agreement(expected, actual).max_relative_diff


@pytest.fixture(scope="module")
def batch(images) -> np.ndarray:
    return np.stack([preprocess_image(images[name], EXACT) for name in SERVED])


@pytest.fixture(scope="module")
def int8_model(tmp_path_factory, onnx_model: Path, batch: np.ndarray) -> Path:
    from resnet_serve.model.quantize import quantize_int8

    return quantize_int8(onnx_model, tmp_path_factory.mktemp("int8") / "resnet50.int8.onnx", batch)


def test_auto_is_bf16_exactly_where_the_cpu_has_it():
    assert resolve_precision("auto", ["BF16", "FP32", "INT8"]) == "bf16"
    assert resolve_precision("auto", ["FP32", "INT8"]) == "fp32"
    assert resolve_precision("fp32", ["BF16", "FP32"]) == "fp32"


def test_bf16_on_a_cpu_without_it_is_refused_not_run_as_fp32():
    with pytest.raises(PrecisionError, match="bf16 needs a CPU with avx512_bf16 or AMX; OpenVINO reports only FP32"):
        resolve_precision("bf16", ["FP32", "INT8"])
    with pytest.raises(PrecisionError, match="unknown precision 'fp16'"):
        resolve_precision("fp16", ["FP32"])


def test_precisions_a_runtime_cannot_honour_are_refused():
    with pytest.raises(PrecisionError, match="cannot force fp32"):
        RUNTIMES["openvino_native"].precision("fp32")
    with pytest.raises(PrecisionError, match="no fast bf16"):
        RUNTIMES["ort"].precision("bf16")
    assert RUNTIMES["ort"].precision("auto") == "fp32"
    assert RUNTIMES["openvino_native"].precision("auto") == "auto"  # OpenVINO's own choice in Triton's backend


def test_a_model_file_that_does_not_match_the_precision_is_refused(onnx_model, int8_model):
    with pytest.raises(PrecisionError, match="is a float model, which cannot run at precision int8"):
        OpenVinoClassifier(model_file=onnx_model, precision="int8")
    with pytest.raises(PrecisionError, match="is an int8 \\(quantized\\) model, which cannot run at precision fp32"):
        OpenVinoClassifier(model_file=int8_model, precision="fp32")


def test_fp32_equals_onnx_runtime(onnx_model, batch):
    from resnet_serve.ort_session import onnx_logits

    logits = OpenVinoClassifier(model_file=onnx_model, precision="fp32")(batch)
    assert relative_difference(logits, onnx_logits(onnx_model, batch)) < RELATIVE_TOLERANCE["fp32"]


def test_big_batches_run_in_chunks_with_the_same_logits(onnx_model, batch):
    classifier = OpenVinoClassifier(model_file=onnx_model, precision="fp32", max_run_batch=4)
    together = classifier(batch)  # 6 images: a call of 4 and a call of 2
    alone = np.concatenate([classifier(batch[k : k + 1]) for k in range(len(batch))])
    np.testing.assert_allclose(together, alone, rtol=0, atol=1e-4)


def test_batches_of_four_and_more_run_on_the_busy_threads_with_the_same_logits(onnx_model, batch):
    every = OpenVinoClassifier(model_file=onnx_model, precision="fp32", threads=2)
    shared = OpenVinoClassifier(model_file=onnx_model, precision="fp32", threads=2, busy_threads=1)
    assert "(1 for batches of 4+)" in shared.describe() and "for batches" not in every.describe()
    assert shared.busy_request is not shared.request and every.busy_request is every.request
    for size in (1, 3, 4, 6):  # 1 and 3 on both threads, 4 and 6 on one
        np.testing.assert_allclose(shared(batch[:size]), every(batch[:size]), rtol=0, atol=1e-4)
        ran, idle = (shared.busy_request, shared.request) if size >= 4 else (shared.request, shared.busy_request)
        assert ran.get_input_tensor(0).shape[0] == size and idle.get_input_tensor(0).shape[0] != size


def test_threads_given_serve_every_batch_and_auto_threads_are_the_cores(onnx_model, monkeypatch):
    auto = OpenVinoClassifier(model_file=onnx_model, precision="fp32")
    assert (auto.threads, auto.busy_threads) == (available_cores(), classifier_share(available_cores()))
    monkeypatch.setattr("resnet_serve.openvino_classifier.available_cores", lambda: 16)
    sixteen = OpenVinoClassifier(model_file=onnx_model, precision="fp32")
    assert (sixteen.threads, sixteen.busy_threads) == (16, 12) and "(12 for batches of 4+)" in sixteen.describe()
    given = OpenVinoClassifier(model_file=onnx_model, precision="fp32", threads=16)
    assert (given.threads, given.busy_threads) == (16, 16) and given.busy_request is given.request
    capped = OpenVinoClassifier(model_file=onnx_model, precision="fp32", threads=8, busy_threads=20)
    assert capped.busy_threads == 8


def _rss_mb() -> float:
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    return int(fields["VmRSS"].split()[0]) / 1024


def test_memory_is_set_at_warm_up_whatever_batch_sizes_follow(onnx_model):
    # Without the warm-up of every size, the first pass over sizes 1..32 grew RSS by 19-48%; a second
    # pass never grew it further (OpenVINO keeps bounded per-shape state).
    classifier = OpenVinoClassifier(model_file=onnx_model, precision="auto", max_run_batch=8)
    classifier.warm_up()
    warmed = _rss_mb()
    zeros = np.zeros((8, 3, 224, 224), np.float32)
    for _ in range(2):
        for size in (3, 8, 1, 5, 7, 2, 6, 4):
            classifier(zeros[:size])
    assert _rss_mb() < warmed * 1.03


def test_agreement_counts_top5_overlap_and_relative_difference():
    reference = np.array([[10.0, 9, 8, 7, 6, 5, 0], [1, 2, 3, 4, 5, 6, 7]])
    candidate = reference.copy()
    candidate[0, 5] = 6.5  # enters image 0's top 5, pushing out class 4
    candidate[1, 0] = 1.7
    result = logit_agreement(reference, candidate)
    assert result.images == 2 and result.top1_agreement == 1.0
    assert result.top5_overlap == pytest.approx(0.9)
    assert result.max_relative_diff == pytest.approx(0.15)  # 1.5 of image 0's largest logit 10


def test_repository_records_the_precision_that_runs(tmp_path, onnx_model):
    root = write_repository(tmp_path / "repo", RepositorySpec(model_file=onnx_model, classifier="openvino"))
    expected = "bf16" if HAS_BF16 else "fp32"
    assert read_marker(root)["precision"] == expected
    config = read_config(root / "resnet50_openvino" / "config.pbtxt")
    assert config.backend == "python" and config.parameters["precision"].string_value == expected
    assert (root / "resnet50_openvino" / "1" / "model.onnx").is_file()


def test_native_backend_config_for_nvidias_image(tmp_path, onnx_model):
    spec = RepositorySpec(model_file=onnx_model, classifier="openvino_native", precision="bf16")
    root = write_repository(tmp_path / "repo", spec)
    config = read_config(root / "resnet50_openvino" / "config.pbtxt")
    assert config.backend == "openvino" and config.default_model_filename == "model.onnx"
    params = {key: value.string_value for key, value in config.parameters.items()}
    assert params == {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": "1", "HINT_BF16": "YES"}
    assert not (root / "resnet50_openvino" / "1" / "model.py").exists()


def test_an_openvino_ir_is_installed_as_xml_and_bin(tmp_path):
    import openvino as ov

    xml = tmp_path / "resnet50.xml"
    ov.save_model(ov.convert_model(tiny_onnx(tmp_path / "tiny.onnx")), xml)  # a real IR, tiny
    spec = RepositorySpec(model_file=xml, classifier="openvino", precision="fp32")
    root = write_repository(tmp_path / "repo", spec)
    version = root / "resnet50_openvino" / "1"
    assert sorted(path.name for path in version.iterdir()) == ["model.bin", "model.py", "model.xml"]


PRECISIONS = ["fp32", pytest.param("bf16", marks=needs_bf16), "int8"]


@pytest.fixture(scope="module", params=PRECISIONS)
def precision_server(request, tmp_path_factory, onnx_model, int8_model):
    precision = request.param
    spec = RepositorySpec(
        model_file=int8_model if precision == "int8" else onnx_model,
        classifier="openvino",
        precision=precision,
        preprocess=EXACT,
        classifier_run_batch=8,  # the load-time warm-up runs every size up to this
    )
    root = write_repository(tmp_path_factory.mktemp(f"ov-{precision}") / "model_repository", spec)
    log = tmp_path_factory.mktemp("log") / "tritonserver.log"
    with TritonServer(ServerSettings.on_free_ports(root), log_path=log) as server:
        yield precision, server


@pytest.mark.server
def test_served_logits_equal_the_torch_reference_within_the_precisions_tolerance(precision_server, model, images):
    precision, server = precision_server
    with TritonClassifier(server.grpc_url) as client:
        served = np.concatenate([client.logits([images[name]]) for name in SERVED])
        together = client.logits([images[name] for name in SERVED])
    expected = reference_logits(model, [images[name] for name in SERVED])
    assert relative_difference(served, expected) < RELATIVE_TOLERANCE[precision]
    assert relative_difference(together, expected) < RELATIVE_TOLERANCE[precision]
    assert logit_agreement(expected, served).top1_agreement == 1.0
