"""The classifier compiled ahead of time by AOTInductor (``repo --compiler aoti``).

AOTInductor compiles for the CPU too, so a small model is really compiled, loaded and checked here;
the GPU tests (needs_cuda) compile a torchvision model through ``write_repository`` and serve it."""

from __future__ import annotations

import json
import os
import signal
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from resnet_serve.aoti import (
    COMPILED_FROM,
    NOTE_FILE,
    PACKAGE_FILE,
    Built,
    CompileError,
    compile_package,
    in_child,
    load_if_fits,
    target,
)
from resnet_serve.repository import RepositoryError, RepositorySpec, model_description, read_marker, write_repository
from resnet_serve.torch_classifier import EAGER, GraphedClassifier, compiled_model

CPU = torch.device("cpu")
SIZE = 32
BUILT = Built("sha of the weights", "small", 5, "fp32", SIZE, 8)


def small_model() -> torch.nn.Module:
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 5),
    )  # fmt: skip
    with torch.no_grad():  # BatchNorm of a trained model: not the identity, so freezing has work to do
        model[1].running_mean.uniform_(-1, 1)
        model[1].running_var.uniform_(0.5, 2)
    return model.eval().to(memory_format=torch.channels_last)


@pytest.fixture(scope="module")
def package(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("aoti") / PACKAGE_FILE
    compile_package(small_model(), path, device=CPU, built=BUILT)
    return path


def inputs(batch: int) -> torch.Tensor:
    return torch.randn(batch, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(batch))


class Counted:
    def __init__(self, model):
        self.model, self.batches = model, []

    def __call__(self, x):
        self.batches.append(len(x))
        return self.model(x)


def test_large_batches_run_the_compiled_package_and_small_ones_the_eager_model(package):
    model, loaded = load_if_fits(package, CPU, BUILT)
    assert model is not None, loaded
    assert loaded.startswith(f"{PACKAGE_FILE}, compiled for {target(CPU)}")
    eager, compiled = Counted(small_model()), Counted(model)
    classifier = GraphedClassifier(eager, CPU, torch.float32, buckets=(1, 2, 4, 8), use_graphs=False, input_size=SIZE,
                                   compiled=compiled, compiled_from=3)  # fmt: skip
    with torch.inference_mode():
        for batch in (1, 2, 3, 8, 11):  # 11: more than the package's largest batch, run in pieces of 8 and 3
            torch.testing.assert_close(classifier(inputs(batch)), small_model()(inputs(batch)), rtol=1e-4, atol=1e-4)
    assert compiled.batches == [3, 8, 8, 3] and eager.batches == [1, 2]


def test_with_a_package_only_the_buckets_of_small_batches_get_cuda_graphs():
    classifier = GraphedClassifier(small_model(), CPU, torch.float32, use_graphs=False, compiled=small_model())
    assert classifier._graphed_buckets() == [1, 2, 4, 8, 16]  # batches of 17 and more: the package
    assert classifier.compiled_from == COMPILED_FROM == 17
    assert GraphedClassifier(small_model(), CPU, torch.float32, use_graphs=False)._graphed_buckets()[-1] == 256


def test_the_note_says_what_the_package_was_built_from_and_for_and_how_close_it_came(package):
    note = json.loads((package.parent / NOTE_FILE).read_text())
    assert note["target"] == target(CPU) and f"torch {torch.__version__}" in note["target"]
    assert note["built"] == asdict(BUILT)
    assert 0 <= note["parity"] < 1e-3 and note["compile_s"] > 0


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"target": "NVIDIA H200 (sm_90), torch 2.11.0+cu130"},
         "was compiled for NVIDIA H200 (sm_90), torch 2.11.0+cu130; this is "),
        ({"built": {**asdict(BUILT), "weights_sha256": "other"}},
         "was compiled with weights_sha256 other; this model has sha of the weights"),
        ({"built": {**asdict(BUILT), "input_size": 64}}, "was compiled with input_size 64; this model has 32"),
    ],
)  # fmt: skip
def test_a_package_built_for_another_gpu_or_from_other_weights_is_left_for_the_eager_model(package, tmp_path, change,
                                                                                            why):  # fmt: skip
    copy = tmp_path / PACKAGE_FILE
    copy.write_bytes(package.read_bytes())
    note = json.loads((package.parent / NOTE_FILE).read_text())
    (tmp_path / NOTE_FILE).write_text(json.dumps({**note, **change}))
    model, said = load_if_fits(copy, CPU, BUILT)
    assert model is None and said.startswith(f"{PACKAGE_FILE} {why}"), said


def test_an_instance_without_a_fitting_package_serves_the_eager_model_and_warns(package, tmp_path):
    weights = tmp_path / "model.pt"
    weights.write_bytes(b"weights the package was not built from")
    (tmp_path / PACKAGE_FILE).write_bytes(package.read_bytes())
    (tmp_path / NOTE_FILE).write_text((package.parent / NOTE_FILE).read_text())
    model, loaded = compiled_model(weights, CPU, arch="small", num_classes=5, dtype="fp32", input_size=SIZE)
    assert model is None and loaded.warning
    assert loaded.text.startswith(f"{EAGER}, not {PACKAGE_FILE}: {PACKAGE_FILE} was compiled with weights_sha256 ")


def test_a_damaged_package_or_note_is_left_for_the_eager_model(package, tmp_path):
    copy = tmp_path / PACKAGE_FILE
    copy.write_bytes(package.read_bytes()[: package.stat().st_size // 2])
    (tmp_path / NOTE_FILE).write_text((package.parent / NOTE_FILE).read_text())
    model, why = load_if_fits(copy, CPU, BUILT)
    assert model is None and why.startswith(f"{PACKAGE_FILE} did not load (")
    (tmp_path / NOTE_FILE).write_text("{")
    model, why = load_if_fits(copy, CPU, BUILT)
    assert model is None and why.startswith(f"no usable note beside {PACKAGE_FILE} (JSONDecodeError")


def test_without_a_package_an_instance_serves_the_eager_model_quietly(tmp_path):
    model, loaded = compiled_model(tmp_path / "model.pt", CPU, arch="small", num_classes=5, dtype="fp32",
                                   input_size=SIZE)  # fmt: skip
    assert model is None and not loaded.warning and loaded.text == f"{EAGER} (no {PACKAGE_FILE})"


def crash_after_compiling(send) -> None:
    send.send(("compiled",))
    os.kill(os.getpid(), signal.SIGSEGV)  # as the package of a mismatched C++ compiler did on load


def killed_while_compiling(send) -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def test_a_package_that_crashes_the_process_loading_it_is_one_line_that_says_what_to_do(monkeypatch):
    monkeypatch.setenv("CXX", "/opt/gcc/bin/g++")
    crashed = r"crashed the process that loaded it \(signal SIGSEGV\); Inductor built it with CXX=/opt/gcc/bin/g\+\+"
    with pytest.raises(CompileError, match=crashed + r".*set CXX to the system's g\+\+"):
        in_child(crash_after_compiling)
    with pytest.raises(CompileError, match=r"ended while compiling \(signal SIGKILL; SIGKILL is often the host out"):
        in_child(killed_while_compiling)


def test_a_model_that_cannot_be_exported_is_refused_in_one_line(tmp_path):
    class DataDependent(torch.nn.Module):
        def forward(self, x):
            return x.flatten(1)[:, :5] if x.mean() > 0 else x.flatten(1)[:, 5:10]  # a branch on the data

    with pytest.raises(CompileError, match=r"^AOTInductor could not compile the classifier: "):
        compile_package(DataDependent(), tmp_path / PACKAGE_FILE, device=CPU, built=BUILT)
    assert not (tmp_path / PACKAGE_FILE).exists()


def test_compiling_is_for_the_gpu_classifier_of_the_fused_and_ours_profiles(tmp_path):
    weights = tmp_path / "m.pt"
    for refused in ({"classifier": "ort"}, {"classifier": "torch", "device": "cuda", "profile": "seed"}):
        with pytest.raises(RepositoryError, match="--compiler aoti compiles the GPU classifier"):
            RepositorySpec(model_file=weights, compiler="aoti", **refused)
    with pytest.raises(RepositoryError, match="unknown compiler 'tensorrt'"):
        RepositorySpec(model_file=weights, classifier="torch", device="cuda", compiler="tensorrt")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_compiling_without_a_gpu_says_so_and_writes_nothing(tmp_path):
    weights = tmp_path / "m.pt"
    weights.write_bytes(b"state dict")
    spec = RepositorySpec(model_file=weights, classifier="torch", device="cuda", compiler="aoti")
    with pytest.raises(CompileError, match="torch sees no CUDA GPU here"):
        write_repository(tmp_path / "repo", spec)
    assert not (tmp_path / "repo").exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")
def test_a_gpu_repository_compiled_by_aoti_gives_the_eager_logits_at_every_batch_size(tmp_path):
    from resnet_serve.model.weights import random_model
    from resnet_serve.torch_classifier import load_state_dict_model

    loaded = random_model("resnet18")
    weights = tmp_path / "resnet18.pt"
    torch.save(loaded.model.state_dict(), weights)
    spec = RepositorySpec(model_file=weights, card=loaded.card, classifier="torch", device="cuda", compiler="aoti",
                          gpus="0")  # fmt: skip
    root = write_repository(tmp_path / "repo", spec)
    device = torch.device("cuda", 0)
    assert model_description(read_marker(root)).endswith(f"; compiled by AOTInductor for {target(device)}")
    weights_there = root / "ensemble_python_resnet50" / "1" / "model.pt"
    assert weights_there.read_bytes() == weights.read_bytes()  # the eager model stays beside it
    model, loaded_text = compiled_model(weights_there, device, arch="resnet18", num_classes=1000, dtype="fp16",
                                        input_size=224)  # fmt: skip
    assert model is not None and not loaded_text.warning, loaded_text
    eager_model = load_state_dict_model(str(weights), device, torch.float16, "resnet18")
    classifier = GraphedClassifier(eager_model, device, torch.float16, compiled=Counted(model))
    assert sorted(classifier.graphs) == [1, 2, 4, 8, 16]  # batches of 17 and more: the package
    with torch.inference_mode():
        for batch in (1, 5, 16, 17, 33, 256, 257):
            x = torch.randn(batch, 3, 224, 224, generator=torch.Generator().manual_seed(batch))
            expected = eager_model(x.to(device).half().contiguous(memory_format=torch.channels_last)).float()
            relative = ((classifier(x) - expected).abs().max() / expected.abs().max()).item()
            assert relative < 1e-2, (batch, relative)  # fp16, as the GPU tests allow the eager classifier
    assert classifier.compiled.batches == [17, 33, 256, 256]  # 257: 256 on the package, then 1 on a graph
