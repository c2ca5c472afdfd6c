"""The classifier compiled ahead of time by AOTInductor (``repo --compiler aoti``).

AOTInductor compiles for the CPU too, so a small model is really compiled, loaded and checked here;
the GPU tests (needs_cuda) compile a torchvision model through ``write_repository`` and serve it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from resnet_serve.aoti import NOTE_FILE, PACKAGE_FILE, CompileError, compile_package, load_if_fits, target
from resnet_serve.repository import RepositoryError, RepositorySpec, model_description, read_marker, write_repository
from resnet_serve.torch_classifier import EAGER, GraphedClassifier, compiled_model

CPU = torch.device("cpu")
SIZE = 32


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
    compile_package(small_model(), path, device=CPU, dtype=torch.float32, input_size=SIZE, max_batch=8)
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
    model, loaded = load_if_fits(package, CPU)
    assert model is not None, loaded
    assert loaded.startswith(f"{PACKAGE_FILE}, compiled for {target(CPU)}")
    eager, compiled = Counted(small_model()), Counted(model)
    classifier = GraphedClassifier(eager, CPU, torch.float32, buckets=(1, 2, 4, 8), use_graphs=False, input_size=SIZE,
                                   compiled=compiled, compiled_from=4)  # fmt: skip
    with torch.inference_mode():
        for batch in (1, 3, 4, 8, 11):  # 11: more than the package's largest batch, run in pieces of 8 and 3
            torch.testing.assert_close(classifier(inputs(batch)), small_model()(inputs(batch)), rtol=1e-4, atol=1e-4)
    assert compiled.batches == [4, 8, 8] and eager.batches == [1, 3, 3]


def test_the_note_says_what_the_package_was_built_for_and_how_close_it_came(package):
    note = json.loads((package.parent / NOTE_FILE).read_text())
    assert note["target"] == target(CPU) and f"torch {torch.__version__}" in note["target"]
    assert note["max_batch"] == 8 and note["input_size"] == SIZE and note["dtype"] == "float32"
    assert 0 <= note["parity"] < 1e-3 and note["compile_s"] > 0


def test_a_package_built_for_another_gpu_or_torch_is_left_for_the_eager_model(package, tmp_path):
    copy = tmp_path / PACKAGE_FILE
    copy.write_bytes(package.read_bytes())
    note = json.loads((package.parent / NOTE_FILE).read_text())
    (tmp_path / NOTE_FILE).write_text(json.dumps({**note, "target": "NVIDIA H200 (sm_90), torch 2.11.0+cu130"}))
    model, why = load_if_fits(copy, CPU)
    assert model is None
    assert why == f"{PACKAGE_FILE} was compiled for NVIDIA H200 (sm_90), torch 2.11.0+cu130; this is {target(CPU)}"
    model, loaded = compiled_model(copy, CPU)
    assert model is None and loaded.warning and loaded.text.startswith(f"{EAGER}, not {PACKAGE_FILE}: ")


def test_a_damaged_package_or_note_is_left_for_the_eager_model(package, tmp_path):
    copy = tmp_path / PACKAGE_FILE
    copy.write_bytes(package.read_bytes()[: package.stat().st_size // 2])
    (tmp_path / NOTE_FILE).write_text((package.parent / NOTE_FILE).read_text())
    model, why = load_if_fits(copy, CPU)
    assert model is None and why.startswith(f"{PACKAGE_FILE} did not load (")
    (tmp_path / NOTE_FILE).write_text("{")
    model, why = load_if_fits(copy, CPU)
    assert model is None and why.startswith(f"no usable note beside {PACKAGE_FILE} (JSONDecodeError")


def test_without_a_package_an_instance_serves_the_eager_model_quietly(tmp_path):
    model, loaded = compiled_model(tmp_path / PACKAGE_FILE, CPU)
    assert model is None and not loaded.warning and loaded.text == f"{EAGER} (no {PACKAGE_FILE})"


def test_a_model_that_cannot_be_exported_is_refused_in_one_line(tmp_path):
    class DataDependent(torch.nn.Module):
        def forward(self, x):
            return x.flatten(1)[:, :5] if x.mean() > 0 else x.flatten(1)[:, 5:10]  # a branch on the data

    with pytest.raises(CompileError, match=r"^AOTInductor could not compile the classifier: "):
        compile_package(DataDependent(), tmp_path / PACKAGE_FILE, device=CPU, dtype=torch.float32, input_size=SIZE,
                        max_batch=8)  # fmt: skip
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
    version = root / "ensemble_python_resnet50" / "1"
    assert (version / "model.pt").read_bytes() == weights.read_bytes()  # the eager model stays beside it
    model, loaded_text = compiled_model(version / PACKAGE_FILE, device)
    assert model is not None and not loaded_text.warning, loaded_text
    eager_model = load_state_dict_model(str(weights), device, torch.float16, "resnet18")
    compiled = GraphedClassifier(eager_model, device, torch.float16, compiled=model)
    assert sorted(compiled.graphs) == [1, 2, 4, 8, 16, 32]  # batches of 32 and more: the package
    eager = GraphedClassifier(eager_model, device, torch.float16)
    for batch in (1, 5, 31, 32, 64, 300):
        x = torch.randn(batch, 3, 224, 224, generator=torch.Generator().manual_seed(batch))
        expected = eager(x)
        relative = ((compiled(x) - expected).abs().max() / expected.abs().max()).item()
        assert relative < 1e-2, (batch, relative)  # fp16, as the GPU tests allow the eager classifier
