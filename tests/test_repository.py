"""The generated model repository: configs parse back and keep the seed's contract."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest
from tritonclient.grpc import model_config_pb2 as mc

from resnet_serve.contract import labels
from resnet_serve.images.preprocess import PreprocessOptions
from resnet_serve.openvino_classifier import PrecisionError
from resnet_serve.repository import (
    ENSEMBLE_NAME,
    RepositoryError,
    RepositorySpec,
    read_config,
    write_repository,
)

from conftest import tiny_onnx


@pytest.fixture
def fake_onnx(tmp_path: Path) -> Path:
    """A real ONNX classifier of the seed's shapes, tiny: the writer reads its shapes, not its numbers."""
    return tiny_onnx(tmp_path / "model.onnx")


def test_labels_are_the_seeds():
    names = labels()
    assert len(names) == 1000 and names[504] == "COFFEE MUG" and names[0] == "TENCH"


def test_ensemble_keeps_the_seed_contract(tmp_path, fake_onnx):
    root = write_repository(tmp_path / "repo", RepositorySpec(model_file=fake_onnx))
    ensemble = read_config(root / ENSEMBLE_NAME / "config.pbtxt")
    assert ensemble.platform == "ensemble" and ensemble.max_batch_size == 256
    inp, lengths = ensemble.input
    assert (inp.name, inp.data_type, list(inp.dims), inp.optional) == ("INPUT", mc.TYPE_UINT8, [-1], False)
    assert (lengths.name, lengths.data_type, list(lengths.dims)) == ("INPUT_LENGTHS", mc.TYPE_INT64, [1])
    assert lengths.optional  # the seed's client sends INPUT alone
    (out,) = ensemble.output
    assert (out.name, out.data_type, list(out.dims)) == ("OUTPUT", mc.TYPE_FP32, [1000])
    first, second = ensemble.ensemble_scheduling.step
    assert first.model_name == "preprocess"
    assert dict(first.input_map) == {"INPUT_0": "INPUT", "INPUT_LENGTHS_0": "INPUT_LENGTHS"}
    assert second.model_name == "resnet50_ort" and dict(second.output_map) == {"output": "OUTPUT"}
    assert (root / ENSEMBLE_NAME / "1").is_dir()


def test_steps_are_configured_for_batching(tmp_path, fake_onnx):
    root = write_repository(tmp_path / "repo", RepositorySpec(model_file=fake_onnx, max_queue_delay_us=500))
    preprocess = read_config(root / "preprocess" / "config.pbtxt")
    assert preprocess.backend == "python" and preprocess.input[0].allow_ragged_batch
    assert preprocess.instance_group[0].kind == mc.ModelInstanceGroup.KIND_CPU  # UINT8 input needs KIND_CPU
    assert preprocess.dynamic_batching.max_queue_delay_microseconds == 500
    assert preprocess.parameters["jpeg_draft"].string_value == "true"
    policy = preprocess.dynamic_batching.default_queue_policy
    assert policy.max_queue_size == 1024 and policy.timeout_action == mc.ModelQueuePolicy.REJECT
    assert policy.default_timeout_microseconds == 30_000_000 and policy.allow_timeout_override
    assert int(preprocess.parameters["max_request_bytes"].string_value) == 256 << 20
    classifier = read_config(root / "resnet50_ort" / "config.pbtxt")
    assert classifier.output[0].label_filename == "labels.txt"
    assert classifier.parameters["max_run_batch"].string_value == "32"
    assert (root / "resnet50_ort" / "labels.txt").read_text().splitlines()[504] == "COFFEE MUG"
    assert (root / "resnet50_ort" / "1" / "model.onnx").read_bytes() == fake_onnx.read_bytes()
    assert "TritonPythonModel" in (root / "preprocess" / "1" / "model.py").read_text()


def test_plan_gives_a_tensorrt_classifier(tmp_path):
    plan = tmp_path / "model.plan"
    plan.write_bytes(b"plan")
    root = write_repository(tmp_path / "repo", RepositorySpec(model_file=plan, classifier="trt"))
    config = read_config(root / "resnet50_trt" / "config.pbtxt")
    assert config.platform == "tensorrt_plan" and (root / "resnet50_trt" / "1" / "model.plan").is_file()
    assert read_config(root / ENSEMBLE_NAME / "config.pbtxt").ensemble_scheduling.step[1].model_name == "resnet50_trt"


def test_refuses_a_foreign_directory_but_rewrites_its_own(tmp_path, fake_onnx):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "precious.txt").write_text("keep me")
    with pytest.raises(RepositoryError, match="not written by resnet-serve"):
        write_repository(foreign, RepositorySpec(model_file=fake_onnx))
    assert (foreign / "precious.txt").read_text() == "keep me"

    ours = write_repository(tmp_path / "ours", RepositorySpec(model_file=fake_onnx))
    (ours / "stale_model").mkdir()
    write_repository(ours, RepositorySpec(model_file=fake_onnx))
    assert not (ours / "stale_model").exists()


@pytest.mark.parametrize(
    ("values", "words"),
    [
        ({"max_queue_wait_ms": -1}, "max_queue_wait_ms must be from 0 to 2147483647 (0: auto, or no limit), got -1"),
        ({"max_request_decode_ms": -5}, "max_request_decode_ms must be from 0 to"),
        ({"max_batch_size": 0}, "max_batch_size must be from 1 to 2147483647, got 0"),  # served, then refused all
        ({"max_queue_size": -5}, "max_queue_size must be from 0 to"),  # emptied the repository being rewritten
        ({"classifier_instances": 0}, "classifier_instances must be from 1 to"),
        ({"classifier_run_batch": 0}, "classifier_run_batch must be from 1 to"),
        ({"max_pixels": 0}, "max_pixels must be from 1 to"),
        ({"max_request_bytes": 2**40}, "max_request_bytes must be from 1 to 2147483647, got 1099511627776"),
    ],
)
def test_counts_and_limits_out_of_range_are_refused_in_words(fake_onnx, values, words):
    preprocess = {name: value for name, value in values.items() if hasattr(PreprocessOptions(), name)}
    own = {name: value for name, value in values.items() if name not in preprocess}
    with pytest.raises(RepositoryError, match=re.escape(words)):
        RepositorySpec(model_file=fake_onnx, preprocess=PreprocessOptions(**preprocess), **own)


def test_a_refused_rewrite_leaves_the_repository_as_it_was(tmp_path, fake_onnx):
    root = write_repository(tmp_path / "repo", RepositorySpec(model_file=fake_onnx))
    before = sorted(str(path.relative_to(root)) for path in root.rglob("*"))
    with pytest.raises(PrecisionError, match="is a float model, which cannot run at precision int8"):
        write_repository(root, RepositorySpec(model_file=fake_onnx, classifier="openvino", precision="int8"))
    assert sorted(str(path.relative_to(root)) for path in root.rglob("*")) == before


def test_missing_model_file_is_an_error(tmp_path):
    with pytest.raises(RepositoryError, match="does not exist"):
        write_repository(tmp_path / "repo", RepositorySpec(model_file=tmp_path / "nope.onnx"))


def test_the_default_profile_is_fused_for_the_gpu_classifier_and_ours_elsewhere(tmp_path, fake_onnx):
    gpu = RepositorySpec(model_file=fake_onnx, classifier="torch", device="cuda")
    assert (gpu.served_profile, replace(gpu, profile="ours").served_profile) == ("fused", "ours")  # asked: as asked
    cpu = RepositorySpec(model_file=fake_onnx)
    assert cpu.served_profile == "ours" and replace(cpu, classifier="torch", device="cuda").served_profile == "fused"
    assert replace(gpu, classifier="ort", device="cpu").served_profile == "ours"  # worked out again, no error
    assert RepositorySpec(model_file=fake_onnx, classifier="trt", device="cuda").served_profile == "ours"  # a plan
    root = write_repository(tmp_path / "gpu", gpu)
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == ["ensemble_python_resnet50"]  # one model


def test_marker_says_when_steps_pass_gpu_tensors(tmp_path, fake_onnx):
    from resnet_serve.repository import read_marker

    cpu = write_repository(tmp_path / "cpu", RepositorySpec(model_file=fake_onnx))
    two_step = RepositorySpec(model_file=fake_onnx, classifier="torch", device="cuda", profile="ours")
    gpu = write_repository(tmp_path / "gpu", two_step)
    fused = write_repository(tmp_path / "fused", replace(two_step, profile="fused"))
    assert [read_marker(root)["gpu_tensors"] for root in (cpu, gpu, fused)] == [False, True, False]
    assert read_marker(tmp_path / "nowhere") == {}


def test_expected_stub_count_follows_the_instance_groups(tmp_path, fake_onnx):
    from resnet_serve.repository import CPU_IMAGE_INSTANCES, GPU_IMAGE_INSTANCES
    from resnet_serve.server import expected_stub_count, visible_gpu_count

    cpu = write_repository(tmp_path / "cpu", RepositorySpec(model_file=fake_onnx, preprocess_instances=3))
    two_gpus = RepositorySpec(model_file=fake_onnx, classifier="torch", device="cuda", gpus="0,1", profile="ours")
    gpu = write_repository(tmp_path / "gpu", two_gpus)
    fused = write_repository(tmp_path / "fused", replace(two_gpus, profile="fused"))
    ngc = write_repository(tmp_path / "ngc", RepositorySpec(model_file=fake_onnx, classifier="onnx"))
    assert expected_stub_count(cpu) == 4  # 3 preprocess + 1 classifier; the ensemble has none
    per_gpu = GPU_IMAGE_INSTANCES  # instances of the model taking the images, on each GPU, by default
    assert expected_stub_count(gpu, gpu_count=2) == 2 * (per_gpu + 1)  # preprocess and one classifier per GPU
    assert expected_stub_count(fused, gpu_count=2) == 2 * per_gpu
    default_cpu = write_repository(tmp_path / "default", RepositorySpec(model_file=fake_onnx))
    assert CPU_IMAGE_INSTANCES == 2 and expected_stub_count(default_cpu) == 3  # two preprocess, one classifier
    assert expected_stub_count(ngc) == CPU_IMAGE_INSTANCES  # the native onnxruntime classifier has no stub
    assert visible_gpu_count({"CUDA_VISIBLE_DEVICES": "0,1"}) == 2
    assert visible_gpu_count({"CUDA_VISIBLE_DEVICES": ""}) == 0


def test_model_files_from_another_version_are_found_before_serving(tmp_path, fake_onnx):
    from resnet_serve.repository import require_current_models, stale_model_files

    root = write_repository(tmp_path / "repo", RepositorySpec(model_file=fake_onnx))
    assert stale_model_files(root) == []
    old = root / "preprocess" / "1" / "model.py"
    old.write_text(old.read_text().replace("self.options", "self.limits"))  # as an older release wrote it
    assert stale_model_files(root) == ["preprocess/1/model.py"]
    with pytest.raises(RepositoryError, match="write it again with `resnet-serve repo"):
        require_current_models(root)  # `serve` checks this before it starts tritonserver
