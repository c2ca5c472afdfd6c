"""The TensorRT plan builder. TensorRT cannot be installed on these machines: the real build runs
only where `tensorrt` imports; here we check the clear failure, and drive the builder against a
stand-in `tensorrt` module (a mock, because TensorRT cannot exist here) to check the API calls."""

from __future__ import annotations

import sys
import types

import pytest

from resnet_serve.engine import EngineError, EngineSpec, build_plan
from test_cli import run_cli

try:
    import tensorrt  # noqa: F401

    HAVE_TENSORRT = True
except ImportError:
    HAVE_TENSORRT = False


@pytest.mark.skipif(HAVE_TENSORRT, reason="TensorRT is installed: the missing-module message cannot show")
def test_missing_tensorrt_is_a_clear_error(tmp_path):
    result = run_cli("engine", "--onnx", str(tmp_path / "m.onnx"), "-o", str(tmp_path / "m.plan"))
    assert result.returncode == 1
    assert "`tensorrt` is not installed" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "m.plan").exists()  # never a fake plan


def test_bad_profile_is_refused():
    with pytest.raises(EngineError, match="min <= opt <= max"):
        EngineSpec(min_batch=8, opt_batch=4).check()


def fake_tensorrt(calls: dict, parse_ok: bool = True) -> types.ModuleType:
    """A stand-in for TensorRT's Python API that records what the builder asked for."""
    trt = types.ModuleType("tensorrt")
    trt.__version__ = "10.3.0"
    trt.Logger = type("Logger", (), {"WARNING": 2, "__init__": lambda self, level: None})
    trt.MemoryPoolType = types.SimpleNamespace(WORKSPACE="workspace")
    trt.BuilderFlag = types.SimpleNamespace(FP16="fp16")

    class Profile:
        def set_shape(self, name, low, opt, high):
            calls["profile"] = (name, low, opt, high)

    class Config:
        def set_memory_pool_limit(self, pool, size):
            calls["workspace"] = size

        def set_flag(self, flag):
            calls.setdefault("flags", []).append(flag)

        def add_optimization_profile(self, profile):
            calls["profiles"] = calls.get("profiles", 0) + 1

    class Builder:
        def __init__(self, logger):
            pass

        def create_network(self, flags):
            calls["network_flags"] = flags
            return object()

        def create_builder_config(self):
            return Config()

        def create_optimization_profile(self):
            return Profile()

        def build_serialized_network(self, network, config):
            return b"serialized engine"

    class OnnxParser:
        num_errors = 0 if parse_ok else 1

        def __init__(self, network, logger):
            pass

        def parse(self, data):
            calls["onnx_bytes"] = len(data)
            return parse_ok

        def get_error(self, index):
            return "unsupported operator"

    trt.Builder, trt.OnnxParser = Builder, OnnxParser
    return trt


def test_builder_asks_tensorrt_for_the_seeds_engine(tmp_path, monkeypatch):
    calls: dict = {}
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt(calls))
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"onnx model")
    plan = build_plan(onnx, tmp_path / "out" / "m.plan", EngineSpec(max_batch=64, workspace_bytes=1 << 30))
    assert plan.read_bytes() == b"serialized engine"
    assert calls["profile"] == ("input", (1, 3, 224, 224), (1, 3, 224, 224), (64, 3, 224, 224))
    assert calls["flags"] == ["fp16"] and calls["workspace"] == 1 << 30 and calls["profiles"] == 1
    assert calls["network_flags"] == 0 and calls["onnx_bytes"] == len(b"onnx model")


def test_parse_failure_names_the_problem(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt({}, parse_ok=False))
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"onnx model")
    with pytest.raises(EngineError, match="unsupported operator"):
        build_plan(onnx, tmp_path / "m.plan")
    assert not (tmp_path / "m.plan").exists()
