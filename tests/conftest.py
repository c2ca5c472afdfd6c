"""Shared fixtures: real images, a fixed-seed ResNet-50, its ONNX export, and a real tritonserver.

No real ImageNet weights exist on these machines, so the served model is a fixed-seed random
ResNet-50 and tests compare served logits with an in-process torch reference on the same weights.
"""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from resnet_serve.images.preprocess import PreprocessOptions
from resnet_serve.repository import RepositorySpec, write_repository
from resnet_serve.server import ServerSettings, TritonServer

# Fixtures that start a tritonserver: a test using one is marked `server` here, so that
# `pytest -m "not server"` runs the unit tests alone. Tests that start their own are marked by hand.
SERVER_FIXTURES = {"server", "limited_server"}


def pytest_collection_modifyitems(items):
    for item in items:
        if SERVER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.server)


ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("RESNET_SERVE_TEST_DATA", ROOT.parent / "shared" / "data"))


def wait_for(condition, timeout: float = 60) -> None:
    """Poll ``condition`` every 0.1 s until it holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def encode(image: Image.Image, fmt: str, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


# The example's photo's size: where mug.jpg is not beside the clone, a photo-like JPEG of that size
# stands in (the tests that need the real photo's classes skip without real weights anyway).
MUG_SIZE = (3361, 2521)
# For the few tests whose bounds were measured on the example's photo itself.
needs_example_photo = pytest.mark.skipif(
    not (DATA_DIR / "mug.jpg").is_file(), reason=f"its bound was measured on the example's mug.jpg, not in {DATA_DIR}"
)


@pytest.fixture(scope="session")
def mug_jpeg() -> bytes:
    """The example's mug.jpg (from $RESNET_SERVE_TEST_DATA or ../shared/data), else a synthetic photo
    of its size: a clone with nothing beside it runs every test."""
    from resnet_serve.bench import synthetic_photos

    path = DATA_DIR / "mug.jpg"
    return path.read_bytes() if path.is_file() else synthetic_photos((MUG_SIZE,))[0]


def tiny_onnx(path: Path, classes: int = 1000, size: int = 224, channels: int = 3) -> Path:
    """A real, tiny classifier in ONNX: [N, channels, size, size] -> mean over the pixels -> a linear
    layer -> [N, classes]. For tests of what reads a model file (its shapes), not of its numbers."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weights = np.linspace(-1, 1, channels * classes, dtype=np.float32).reshape(channels, classes)
    graph = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["input", "axes"], ["pooled"], keepdims=0),
            helper.make_node("MatMul", ["pooled", "weights"], ["output"]),
        ],
        "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", channels, size, size])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", classes])],
        initializer=[numpy_helper.from_array(weights, "weights"), numpy_helper.from_array(np.array([2, 3]), "axes")],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    return path


@pytest.fixture(scope="session")
def mug_image(mug_jpeg: bytes) -> Image.Image:
    return Image.open(io.BytesIO(mug_jpeg)).convert("RGB")


@pytest.fixture(scope="session")
def images(mug_jpeg: bytes, mug_image: Image.Image) -> dict[str, bytes]:
    """Real images of different sizes, formats and modes, all made from mug.jpg."""
    small = mug_image.resize((500, 375), Image.Resampling.LANCZOS)
    return {
        "mug.jpg": mug_jpeg,
        "mug_500x375.jpg": encode(small, "JPEG", quality=90),
        "mug_portrait.png": encode(small.transpose(Image.Transpose.ROTATE_90), "PNG"),
        "mug_gray.png": encode(small.convert("L"), "PNG"),
        "mug_rgba.png": encode(small.convert("RGBA"), "PNG"),
        "mug_cmyk.jpg": encode(small.convert("CMYK"), "JPEG", quality=90),
        "mug_palette.png": encode(small.convert("P", palette=Image.Palette.ADAPTIVE), "PNG"),
        "mug_tiny.jpg": encode(mug_image.resize((120, 90)), "JPEG", quality=90),
    }


@pytest.fixture(scope="session")
def model():
    from resnet_serve.model.weights import random_resnet50

    return random_resnet50().model


@pytest.fixture(scope="session")
def onnx_model(tmp_path_factory, model) -> Path:
    from resnet_serve.model.export import export_onnx

    return export_onnx(model, tmp_path_factory.mktemp("onnx") / "resnet50.onnx")


def reference_logits(model, images: list[bytes]) -> np.ndarray:
    """torchvision's ImageNet eval transform + the torch model, in process: the ground truth."""
    import torch

    from resnet_serve.images.reference import reference_tensor

    batch = torch.from_numpy(np.stack([reference_tensor(data) for data in images]))
    with torch.inference_mode():
        return model(batch).numpy()


# The served repository decodes JPEGs at full size (jpeg_draft off) so that its numbers can be held to
# torchvision's exactly; the speed default (draft on) is bounded separately in test_preprocess.py.
EXACT = PreprocessOptions(jpeg_draft=False, exif_transpose=False)


@pytest.fixture(scope="session")
def repository(tmp_path_factory, onnx_model: Path) -> Path:
    root = tmp_path_factory.mktemp("repo") / "model_repository"
    return write_repository(root, RepositorySpec(model_file=onnx_model, preprocess=EXACT, max_queue_delay_us=2000))


@pytest.fixture(scope="session")
def server(repository: Path, tmp_path_factory):
    settings = ServerSettings.on_free_ports(repository)
    log = tmp_path_factory.mktemp("log") / "tritonserver.log"
    with TritonServer(settings, log_path=log) as running:
        yield running
