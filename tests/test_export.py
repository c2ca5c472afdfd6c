"""Weights loading and the ONNX export with its parity check against torch."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from resnet_serve.model.build import parity_batch
from resnet_serve.model.export import ExportError, check_parity, max_logit_difference
from resnet_serve.model.weights import WeightsError, load_model, load_weights_file, random_resnet50
from resnet_serve.ort_session import OrtClassifier, create_session


def test_onnx_contract(onnx_model):
    graph = onnx.load(str(onnx_model), load_external_data=False).graph
    (inp,) = graph.input
    (out,) = graph.output
    assert (inp.name, out.name) == ("input", "output")
    dims = inp.type.tensor_type.shape.dim
    assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == [3, 224, 224]  # dynamic batch


def test_onnx_matches_torch_on_a_real_image(model, onnx_model, images):
    batch, _ = parity_batch([images["mug.jpg"], images["mug_500x375.jpg"]])
    assert check_parity(model, onnx_model, batch) < 1e-3


def test_ort_classifier_runs_big_batches_in_chunks(onnx_model):
    session = create_session(onnx_model)
    batch = np.random.default_rng(0).standard_normal((5, 3, 224, 224), dtype=np.float32)
    whole = OrtClassifier(session, max_run_batch=8)(batch)
    chunked = OrtClassifier(session, max_run_batch=2)
    chunked.warm_up()  # batches of 2 and 1
    np.testing.assert_allclose(chunked(batch), whole, rtol=0, atol=1e-4)
    with pytest.raises(ValueError, match="at least 1"):
        OrtClassifier(session, max_run_batch=0)


def test_parity_check_fails_on_a_different_model(onnx_model, images):
    other = random_resnet50(seed=1).model
    batch, _ = parity_batch([images["mug_500x375.jpg"]])
    assert max_logit_difference(other, onnx_model, batch) > 1e-3
    with pytest.raises(ExportError, match="not trustworthy"):
        check_parity(other, onnx_model, batch)


def test_random_weights_are_fixed():
    a, b = random_resnet50().model, random_resnet50().model
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


def test_weights_file_round_trip(tmp_path, model):
    plain = tmp_path / "plain.pth"
    torch.save(model.state_dict(), plain)
    wrapped = tmp_path / "checkpoint.pth"
    torch.save({"epoch": 90, "state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}, wrapped)
    for path in (plain, wrapped):
        loaded = load_weights_file(path)
        assert loaded.meaningful
        assert torch.equal(loaded.model.fc.weight, model.fc.weight)


def test_bad_weights_files_are_clear_errors(tmp_path, monkeypatch):
    with pytest.raises(WeightsError, match="does not exist"):
        load_weights_file(tmp_path / "missing.pth")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"junk")
    with pytest.raises(WeightsError, match="not a PyTorch weights file"):
        load_weights_file(junk)
    wrong = tmp_path / "wrong.pth"
    torch.save({"fc.weight": torch.zeros(10, 2048)}, wrong)
    with pytest.raises(WeightsError, match="does not fit"):
        load_weights_file(wrong)
    monkeypatch.setenv("RESNET_SERVE_WEIGHTS", str(junk))
    with pytest.raises(WeightsError, match="not a PyTorch weights file"):
        load_model()
