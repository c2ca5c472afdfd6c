"""Bad input never takes anything down: a bounded fuzz of the pure functions, then a flood of
malformed payloads through the real server, after which a good request gives the same logits."""

from __future__ import annotations

import io
import os
import struct
import threading
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tritonclient.utils import InferenceServerException

from resnet_serve.client import Connection, TritonClassifier
from resnet_serve.images.preprocess import ImageError, PreprocessOptions, preprocess_image
from resnet_serve.repository import ENSEMBLE_NAME, RepositorySpec, write_repository
from resnet_serve.server import ServerSettings, TritonServer, procfs

from conftest import wait_for


def png_header(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` pixels and holds almost no data."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00")) + chunk(b"IEND", b"")


def malformed_payloads(valid: list[bytes], count: int, seed: int = 0) -> list[bytes]:
    """Random bytes, truncations, bit flips and huge declared sizes, made from valid images."""
    rng = np.random.default_rng(seed)
    payloads = [b"\x00" * 64, b"\xff\xd8\xff", png_header(100_000, 100_000), png_header(0, 5)]
    while len(payloads) < count:
        base = valid[int(rng.integers(len(valid)))]
        kind = len(payloads) % 3
        if kind == 0:
            payloads.append(rng.integers(0, 256, int(rng.integers(1, 4096)), dtype=np.uint8).tobytes())
        elif kind == 1:
            payloads.append(base[: int(rng.integers(1, len(base) - 1))])
        else:
            corrupt = bytearray(base[:20_000])
            for position in rng.integers(0, len(corrupt), 16):
                corrupt[position] ^= 0xFF
            payloads.append(bytes(corrupt[: int(rng.integers(100, len(corrupt)))]))
    return payloads


def check_outcome(data: bytes) -> None:
    """The only allowed outcomes: a valid tensor, or an ImageError."""
    try:
        out = preprocess_image(data, PreprocessOptions(max_pixels=20_000_000))
    except ImageError:
        return
    assert out.shape == (3, 224, 224) and np.isfinite(out).all()


def test_huge_declared_size_is_refused_before_decoding():
    refused = r"100000x100000 pixels exceeds|decompression bomb|cannot inflate to the 30000100000 bytes"
    with pytest.raises(ImageError, match=refused):
        preprocess_image(png_header(100_000, 100_000))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=2048))
def test_fuzz_random_bytes(data):
    check_outcome(data)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_fuzz_mutated_real_images(images, data):
    base = images[data.draw(st.sampled_from(["mug_500x375.jpg", "mug_gray.png", "mug_tiny.jpg"]))]
    mutated = bytearray(base)
    for _ in range(data.draw(st.integers(1, 8))):
        mutated[data.draw(st.integers(0, len(mutated) - 1))] = data.draw(st.integers(0, 255))
    check_outcome(bytes(mutated[: data.draw(st.integers(1, len(mutated)))]))


def test_server_survives_hundreds_of_malformed_payloads(server, images):
    good = images["mug_500x375.jpg"]
    with TritonClassifier(server.grpc_url) as client:
        before = client.logits([good])
    payloads = malformed_payloads(list(images.values()), 300)

    def send(payload: bytes) -> str:
        with TritonClassifier(server.grpc_url, timeout_s=30) as client:
            try:
                client.logits([payload])
            except InferenceServerException as exc:
                return exc.message()
        return "ok"

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(send, payloads))
    failures = [o for o in outcomes if o != "ok"]
    assert len(failures) > 250  # nearly all are undecodable; a few bit flips still decode
    assert all("image 0:" in message for message in failures), {m for m in failures if "image 0:" not in m}
    with TritonClassifier(server.grpc_url) as client:
        np.testing.assert_array_equal(client.logits([good]), before)


def test_wrong_dtype_or_shape_is_refused_by_triton(server, images):
    client = grpcclient.InferenceServerClient(url=server.grpc_url)
    wrong_type = grpcclient.InferInput("INPUT", [1, 8], "FP32")
    wrong_type.set_data_from_numpy(np.zeros((1, 8), np.float32))
    with pytest.raises(InferenceServerException, match=r"(?i)data.?type"):
        client.infer(ENSEMBLE_NAME, [wrong_type])
    padding_only = grpcclient.InferInput("INPUT", [2, 16], "UINT8")
    padding_only.set_data_from_numpy(np.zeros((2, 16), np.uint8))
    with pytest.raises(InferenceServerException, match="image 0: not a recognised image format"):
        client.infer(ENSEMBLE_NAME, [padding_only])
    with TritonClassifier(server.grpc_url) as ours:
        assert ours.logits([images["mug_tiny.jpg"]]).shape == (1, 1000)


@pytest.fixture(scope="module")
def limited_server(tmp_path_factory, onnx_model, images):
    """A server with small limits: 4 images per request, 1.5 mug.jpg's worth of bytes, 2 queued."""
    limits = PreprocessOptions(max_request_bytes=len(images["mug.jpg"]) * 3 // 2)
    spec = RepositorySpec(model_file=onnx_model, preprocess=limits, max_batch_size=4, max_queue_size=2)
    root = write_repository(tmp_path_factory.mktemp("limited") / "model_repository", spec)
    with TritonServer(ServerSettings.on_free_ports(root), log_path=root.parent / "tritonserver.log") as server:
        yield server


def test_request_limits_give_clear_errors(limited_server, images):
    mug = images["mug.jpg"]
    with TritonClassifier(limited_server.grpc_url) as client:
        with pytest.raises(InferenceServerException, match=r"request of \d+ bytes exceeds the limit"):
            client.logits([mug, mug])
        with pytest.raises(InferenceServerException, match="batch-size must be <= 4"):
            client.logits([images["mug_tiny.jpg"]] * 5)
        assert client.logits([mug]).shape == (1, 1000)
    # Our gRPC clients cap what they send (default: the server's default request limit + framing).
    small = Connection(max_send_bytes=len(mug) // 2)
    with (
        TritonClassifier(limited_server.grpc_url, connection=small) as client,
        pytest.raises(InferenceServerException, match="larger than max"),
    ):
        client.logits([mug])


def test_a_full_queue_refuses_new_requests_at_once_and_serving_goes_on(limited_server, images):
    clients = [TritonClassifier(limited_server.grpc_url, timeout_s=60) for _ in range(16)]
    start_together = threading.Barrier(len(clients))

    def classify(client: TritonClassifier) -> str:
        start_together.wait()
        try:
            client.logits([images["mug.jpg"]])  # ~20-100 ms to decode each: the queue of 2 fills up
        except InferenceServerException as exc:
            return exc.message()
        return "ok"

    with ThreadPoolExecutor(len(clients)) as pool:
        outcomes = list(pool.map(classify, clients))
    refused = [o for o in outcomes if o != "ok"]
    assert refused and "ok" in outcomes
    assert all("maximum queue size" in message for message in refused), set(refused)
    assert clients[0].logits([images["mug.jpg"]]).shape == (1, 1000)  # serving goes on
    for client in clients:
        client.close()


def cpu_seconds(pid: int) -> float:
    """The CPU time (user and system) process ``pid`` has used, from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.fixture(scope="module")
def one_slow_lane(tmp_path_factory, onnx_model):
    """One preprocess instance on one thread: a request waits while another decodes. Requests wait at
    most 50 ms for it, and one request's images get 1 ms of decoding (the first always starts)."""
    budget = PreprocessOptions(max_request_decode_ms=1)
    spec = RepositorySpec(model_file=onnx_model, preprocess=budget, preprocess_instances=1, preprocess_threads=1,
                          max_queue_wait_ms=50)  # fmt: skip
    root = write_repository(tmp_path_factory.mktemp("slow_lane") / "model_repository", spec)
    with TritonServer(ServerSettings.on_free_ports(root), log_path=root.parent / "tritonserver.log") as server:
        yield server


@pytest.fixture(scope="module")
def costly_jpeg():
    """A 48-megapixel progressive JPEG of noise: allowed by the limits, ~1.3 s of decoding on one core."""
    from PIL import Image

    size = (8000, 6000)
    gradient = Image.linear_gradient("L").resize(size)
    bands = [gradient, Image.effect_noise(size, 40), gradient]
    out = io.BytesIO()
    Image.merge("RGB", bands).save(out, "JPEG", quality=90, progressive=True)
    return out.getvalue()


@pytest.mark.server
def test_a_request_that_waited_past_the_queue_limit_is_refused_as_unavailable(one_slow_lane, costly_jpeg, images):
    def costly() -> np.ndarray:
        with TritonClassifier(one_slow_lane.grpc_url) as other:
            return other.logits([costly_jpeg])

    (stub,) = [pid for pid in one_slow_lane.stub_pids() if procfs.stub_model(pid) == "preprocess"]
    idle = cpu_seconds(stub)
    with ThreadPoolExecutor(1) as pool, TritonClassifier(one_slow_lane.grpc_url) as client:
        busy = pool.submit(costly)
        # Once the preprocess stub burns CPU, the costly request (~1.3 s) is executing: the next one
        # waits in the queue (a fixed sleep let it arrive first once, and the two were batched together).
        wait_for(lambda: cpu_seconds(stub) - idle >= 0.1, timeout=30)
        with pytest.raises(InferenceServerException, match="Request timeout expired") as refused:
            client.logits([images["mug_tiny.jpg"]])
        assert refused.value.status() == "StatusCode.UNAVAILABLE"  # retryable, not the client's fault
        assert busy.result().shape == (1, 1000)
        assert client.logits([images["mug_tiny.jpg"]]).shape == (1, 1000)  # nothing waits now


@pytest.mark.server
def test_a_request_past_its_decode_time_has_its_later_images_refused(one_slow_lane, costly_jpeg, images):
    tiny = images["mug_tiny.jpg"]
    with TritonClassifier(one_slow_lane.grpc_url) as client:
        refused = "image 1: not decoded: its request's images took over 1 ms"
        with pytest.raises(InferenceServerException, match=refused):
            client.logits([costly_jpeg, tiny])
        assert client.logits([tiny]).shape == (1, 1000)  # a request's first image always starts
