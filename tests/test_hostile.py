"""Hostile input against a real tritonserver, over gRPC and HTTP, with the repository's default limits.

Over 10,000 generated payloads (tests/hostile_payloads.py): random bytes, truncations of every allowed
format at many points, cut-off images zero-padded beside a bigger one, bit flips, lying headers,
decompression bombs, containers hiding big images, unusable EXIF, wrong shapes and types. Many images
travel in one request (each gets its own "image i: ..." error), several requests at a time, requests
with and without INPUT_LENGTHS mixed. Asserted: every truncated or corrupt image is refused by name
(none answered, none answered from padding), refusals over a limit stay cheap (the server's memory
after them; a generous per-request time cap only), and at the end the same server processes serve
identical logits for a good image.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from PIL import Image
from tritonclient.utils import InferenceServerException

import hostile_payloads as hp
from resnet_serve.client import image_lengths, pack_images
from resnet_serve.contract import ENSEMBLE_INPUT, ENSEMBLE_LENGTHS, ENSEMBLE_NAME, ENSEMBLE_OUTPUT
from resnet_serve.repository import RepositorySpec, write_repository
from resnet_serve.server import ServerSettings, TritonServer

pytestmark = pytest.mark.server

PROTOCOLS = ("grpc", "http")
PER_REQUEST = 64  # images per request where each image's outcome is read from the error message
TIMEOUT_S = 60.0  # generous cap on one request: a refusal that takes this long is a failure
MEMORY_BOUND = 500 << 20  # the server (tritonserver + stubs) after refusals over a limit: baseline + this
COUNTS: Counter = Counter()  # distinct payloads generated per category, reported by the last test


@pytest.fixture(scope="module")
def server(tmp_path_factory, onnx_model: Path):
    """A server with the repository defaults: the limits under test are the ones users get."""
    spec = RepositorySpec(model_file=onnx_model)
    root = write_repository(tmp_path_factory.mktemp("hostile") / "model_repository", spec)
    with TritonServer(ServerSettings.on_free_ports(root), log_path=root.parent / "tritonserver.log") as running:
        yield running


@pytest.fixture(scope="module")
def bases(mug_image) -> dict[str, bytes]:
    return hp.base_images(mug_image)


@pytest.fixture(scope="module")
def baseline(server, images):
    """Before any hostile input: the good image's logits over each protocol, the stubs and memory."""
    good = images["mug_500x375.jpg"]
    logits = {protocol: send(server, protocol, [good])[0] for protocol in PROTOCOLS}
    return {"good": good, "logits": logits, "stubs": sorted(server.stub_pids()), "rss": server_rss(server)}


def send(server, protocol: str, images: list[bytes], lengths: bool = True, raw_inputs=None):
    """One request: (logits, None) when answered, (None, message) when refused."""
    triton = grpcclient if protocol == "grpc" else httpclient
    url = server.grpc_url if protocol == "grpc" else server.http_url
    extra = {"client_timeout": TIMEOUT_S} if protocol == "grpc" else {}
    options = {"network_timeout": TIMEOUT_S} if protocol == "http" else {}
    client = triton.InferenceServerClient(url, **options)
    try:
        inputs = raw_inputs(triton) if raw_inputs else _inputs(triton, images, lengths)
        result = client.infer(ENSEMBLE_NAME, inputs, **extra)
        return result.as_numpy(ENSEMBLE_OUTPUT), None
    except InferenceServerException as exc:
        message = exc.message() or str(exc)
        assert "timed out" not in message.lower() and "deadline" not in message.lower(), message
        return None, message
    finally:
        client.close()


def _inputs(triton, images: list[bytes], lengths: bool) -> list:
    batch = pack_images(images)
    inputs = [triton.InferInput(ENSEMBLE_INPUT, list(batch.shape), "UINT8")]
    inputs[0].set_data_from_numpy(batch)
    if lengths:
        sizes = image_lengths(images)
        inputs.append(triton.InferInput(ENSEMBLE_LENGTHS, list(sizes.shape), "INT64"))
        inputs[1].set_data_from_numpy(sizes)
    return inputs


def named(message: str | None) -> set[int]:
    """The image indices a refusal names ("image 3: ...")."""
    return {int(index) for index in re.findall(r"(?:^|[,;] )image (\d+): ", message or "")}


def server_rss(server) -> int:
    """Resident bytes of tritonserver and its stubs: each one's private memory, plus the shared memory
    they exchange tensors through once (every process maps the same regions)."""
    private, shared = 0, 0
    for pid in [server.process.pid, *server.stub_pids()]:
        status = Path(f"/proc/{pid}/status").read_text()
        private += int(re.search(r"RssAnon:\s+(\d+) kB", status).group(1)) * 1024
        shared = max(shared, int(re.search(r"RssShmem:\s+(\d+) kB", status).group(1)) * 1024)
    return private + shared


def groups(items: list, size: int) -> list[list]:
    return [items[start : start + size] for start in range(0, len(items), size)]


def run_all(jobs, function, workers: int = 4) -> list:
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(lambda job: function(*job), jobs))


def test_truncated_and_random_payloads_are_each_refused_by_name(server, baseline, bases):
    truncated = hp.truncations(bases, per_image=300)
    random = hp.random_bytes(3000)
    COUNTS.update(truncated=len(truncated), random=len(random))
    payloads = [p.data for p in truncated + random]
    # With lengths (our clients) and, for the truncations, without (the seed's contract: zero padding).
    jobs = [(protocol, group, True) for group in groups(payloads, PER_REQUEST) for protocol in PROTOCOLS]
    padded = groups(payloads[: len(truncated)], PER_REQUEST)
    jobs += [(protocol, group, False) for group in padded for protocol in PROTOCOLS]

    def check(protocol, group, lengths):
        logits, message = send(server, protocol, group, lengths)
        return logits is None and named(message) == set(range(len(group))), message

    outcomes = run_all(jobs, check)
    wrong = [message for ok, message in outcomes if not ok]
    assert not wrong, f"{len(wrong)} of {len(jobs)} requests had an image answered or not named: {wrong[:2]}"


def test_cut_off_images_beside_a_bigger_image_are_never_answered_from_padding(server, baseline, bases, images):
    big = images["mug_portrait.png"]  # 190 kB, more than any cut-off image below: they are zero-padded to it
    cut_off = [p.data for p in hp.truncations(bases, per_image=120, seed=5)]
    COUNTS.update(padded_truncated=len(cut_off))
    jobs = [
        (protocol, [big, *group], lengths)
        for group in groups(cut_off, 31)
        for protocol in PROTOCOLS
        for lengths in (False, True)
    ]

    def check(protocol, group, lengths):
        logits, message = send(server, protocol, group, lengths)
        return logits is None and named(message) == set(range(1, len(group))), message

    wrong = [message for ok, message in run_all(jobs, check) if not ok]
    assert not wrong, f"{len(wrong)} of {len(jobs)} requests answered a padded cut-off image: {wrong[:2]}"


def test_bit_flips_and_lying_headers_never_crash_and_corrupt_ones_are_refused(server, baseline, bases):
    flips, lying = hp.bit_flips(bases, 2400), hp.lying_headers(bases)
    COUNTS.update(bit_flips=len(flips), lying_headers=len(lying))
    poison = b"not an image"  # last in every request: no request reaches the classifier
    jobs = [(protocol, group) for group in groups(flips + lying, PER_REQUEST - 1) for protocol in PROTOCOLS]

    def check(protocol, group):
        logits, message = send(server, protocol, [p.data for p in group] + [poison], lengths=protocol == "grpc")
        refused = named(message)
        must = {index for index, payload in enumerate(group) if payload.must_refuse}
        return logits is None and len(group) in refused and must <= refused, message, len(refused) - 1

    outcomes = run_all(jobs, check)
    wrong = [message for ok, message, _ in outcomes if not ok]
    assert not wrong, f"{len(wrong)} requests: a corrupt image was answered or not named: {wrong[:2]}"
    refused = sum(count for _, _, count in outcomes[::2])  # one protocol's count
    print(f"\nbit flips and lying headers: {refused} of {len(flips) + len(lying)} refused")
    assert 0 < refused < len(flips) + len(lying)  # flips in pixel data still decode; flips in headers do not


def test_requests_over_a_limit_are_refused_cheaply(server, baseline, bases):
    cases = hp.bombs(bases)
    COUNTS.update(over_limit=sum(len(request) for _, request, _ in cases))
    before = server_rss(server)
    slowest = (0.0, "")
    for protocol in PROTOCOLS:
        for what, request, expected in cases:
            start = time.perf_counter()
            logits, message = send(server, protocol, request)
            slowest = max(slowest, (time.perf_counter() - start, f"{what} ({protocol})"))
            assert logits is None and re.search(expected, message), (what, message)
    grown = server_rss(server) - before
    print(f"\nover-limit refusals: slowest {slowest[0]:.3f} s ({slowest[1]}), server memory {grown / 2**20:+.0f} MiB")
    assert grown < MEMORY_BOUND, f"the server grew by {grown / 2**20:.0f} MiB refusing requests over a limit"


def test_issue_28_images_fail_alone_beside_good_requests_with_short_4xx_messages(server, baseline, bases):
    # Each hostile image shares a dynamic batch with good requests sent at the same time: only its own
    # request fails, with a short message (no traceback, no server path), and every good answer is exact.
    hostile = hp.issue_28_refused(bases)
    COUNTS.update(issue_28=len(hostile))
    jobs = [(protocol, [payload.data]) for payload in hostile * 3 for protocol in PROTOCOLS]
    jobs += [(protocol, [baseline["good"]]) for _ in range(len(jobs)) for protocol in PROTOCOLS]
    outcomes = run_all(jobs, lambda protocol, images: (protocol, images, *send(server, protocol, images)), workers=8)
    for protocol, images, logits, message in outcomes:
        if images[0] is baseline["good"]:
            assert message is None, message
            np.testing.assert_array_equal(logits, baseline["logits"][protocol])
        else:
            assert logits is None and named(message) == {0} and len(message) < 400, message
            assert "Traceback" not in message and ".py" not in message, message


def test_unusable_exif_orientation_counts_as_upright(server, baseline, mug_image):
    odd = hp.odd_exif(mug_image)
    COUNTS.update(odd_exif=len(odd))
    upright = hp.encode(mug_image.convert("RGB").resize((160, 120), Image.Resampling.BILINEAR), "JPEG", quality=90)
    for protocol in PROTOCOLS:
        logits, message = send(server, protocol, [upright] + [data for _, data in odd])
        assert message is None
        np.testing.assert_allclose(logits[1:], np.broadcast_to(logits[0], logits[1:].shape), atol=1e-4)


def _raw(name: str, array: np.ndarray, datatype: str, lengths: np.ndarray | None = None, lengths_type: str = "INT64"):
    def build(triton):
        inputs = []
        if name:
            inputs.append(triton.InferInput(name, list(array.shape), datatype))
            inputs[-1].set_data_from_numpy(array)
        if lengths is not None:
            inputs.append(triton.InferInput(ENSEMBLE_LENGTHS, list(lengths.shape), lengths_type))
            inputs[-1].set_data_from_numpy(lengths)
        return inputs

    return build


def test_wrong_shapes_types_and_lengths_get_clean_errors(server, baseline):
    good = np.frombuffer(baseline["good"], np.uint8)
    row = good[None, :]
    two = np.stack([good, good])
    cases = {
        "FP32 images": _raw(ENSEMBLE_INPUT, row.astype(np.float32), "FP32"),
        "INT8 images": _raw(ENSEMBLE_INPUT, row.astype(np.int8), "INT8"),
        "3-D images": _raw(ENSEMBLE_INPUT, row[None], "UINT8"),
        "no image bytes": _raw(ENSEMBLE_INPUT, np.zeros((1, 0), np.uint8), "UINT8"),
        "257 images": _raw(ENSEMBLE_INPUT, np.zeros((257, 4), np.uint8), "UINT8"),
        "lengths alone": _raw("", row, "UINT8", np.array([[len(good)]], np.int64)),
        "INT32 lengths": _raw(ENSEMBLE_INPUT, row, "UINT8", np.array([[len(good)]], np.int32), "INT32"),
        "FP32 lengths": _raw(ENSEMBLE_INPUT, row, "UINT8", np.array([[len(good)]], np.float32), "FP32"),
        "1-D lengths": _raw(ENSEMBLE_INPUT, two, "UINT8", np.array([len(good)] * 2, np.int64)),
        "[N, 2] lengths": _raw(ENSEMBLE_INPUT, two, "UINT8", np.array([[len(good)] * 2] * 2, np.int64)),
        "too few lengths": _raw(ENSEMBLE_INPUT, two, "UINT8", np.array([[len(good)]], np.int64)),
        "zero length": _raw(ENSEMBLE_INPUT, two, "UINT8", np.array([[len(good)], [0]], np.int64)),
        "negative length": _raw(ENSEMBLE_INPUT, two, "UINT8", np.array([[len(good)], [-1]], np.int64)),
        "length past the row": _raw(ENSEMBLE_INPUT, two, "UINT8", np.array([[len(good)], [len(good) + 1]], np.int64)),
        "huge length": _raw(ENSEMBLE_INPUT, two, "UINT8", np.array([[len(good)], [2**62]], np.int64)),
        "short length": _raw(ENSEMBLE_INPUT, two, "UINT8", np.array([[len(good)], [len(good) // 2]], np.int64)),
    }
    COUNTS.update(wrong_inputs=len(cases))
    for protocol in PROTOCOLS:
        for what, build in cases.items():
            logits, message = send(server, protocol, [], raw_inputs=build)
            assert logits is None and message, what


def test_the_server_survived_everything_and_serves_identical_logits(server, baseline):
    assert server.process.poll() is None, server.log_tail()
    assert sorted(server.stub_pids()) == baseline["stubs"]  # no stub died or was replaced
    grown = server_rss(server) - baseline["rss"]
    for protocol in PROTOCOLS:
        logits, message = send(server, protocol, [baseline["good"]])
        assert message is None
        np.testing.assert_array_equal(logits, baseline["logits"][protocol])
    print(f"\nhostile payloads: {sum(COUNTS.values())} ({dict(COUNTS)}), each sent over gRPC and HTTP")
    print(f"server memory after all of them: {grown / 2**20:+.0f} MiB (requests of up to 6 MiB, 4 at a time)")
    if len(COUNTS) == 7:  # the whole module ran
        assert sum(COUNTS.values()) >= 10_000
