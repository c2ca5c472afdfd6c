"""Classify images over gRPC or HTTP with tritonclient.

Several images of different sizes travel in ONE request: UINT8 [N, L], each image zero-padded to
the longest, with INT64 [N, 1] true lengths (INPUT_LENGTHS) so that the server never reads padding.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

from resnet_serve.contract import (
    DEFAULT_MAX_REQUEST_BYTES,
    ENSEMBLE_INPUT,
    ENSEMBLE_LENGTHS,
    ENSEMBLE_NAME,
    ENSEMBLE_OUTPUT,
)
from resnet_serve.errors import ResnetServeError

PROTOCOLS = ("grpc", "http")
DEFAULT_URLS = {"grpc": "127.0.0.1:8001", "http": "127.0.0.1:8000"}
# A URL's scheme -> (protocol, TLS).
SCHEMES = {"grpc": ("grpc", False), "grpcs": ("grpc", True), "http": ("http", False), "https": ("http", True)}


class ClientError(ResnetServeError):
    """The client cannot be set up as asked; the message says what to change."""


def split_url(url: str) -> tuple[str | None, bool, str]:
    """``grpc://host:port``, ``http(s)://host:port`` or plain ``host:port`` -> (protocol or None, TLS, host:port)."""
    scheme, found, address = url.partition("://")
    if not found:
        return None, False, _checked_address(url, url)
    if scheme.lower() not in SCHEMES:
        raise ClientError(f"unknown scheme {scheme!r} in {url!r}: use grpc://, http:// or https://, or host:port")
    if "/" in address.rstrip("/") or not address:
        raise ClientError(f"give the server's address as SCHEME://host:port, got {url!r}")
    protocol, tls = SCHEMES[scheme.lower()]
    return protocol, tls, _checked_address(address.rstrip("/"), url)


def _checked_address(address: str, url: str) -> str:
    """``address`` if it is host:port with a port from 1 to 65535 (an IPv6 host in brackets)."""
    try:
        parts = urlsplit(f"//{address}")
        port = parts.port
    except ValueError as exc:
        raise ClientError(f"give the server's address as host:port, got {url!r} ({exc})") from None
    if not parts.hostname or not port:
        raise ClientError(f"give the server's address as host:port (a port from 1 to 65535), got {url!r}")
    return address


# gRPC message limits of our clients (tritonclient's default is 2 GiB each way): a request carries at
# most the server's default request tensor plus framing; a reply, 256 x 1000 FP32 logits.
MAX_SEND_BYTES = DEFAULT_MAX_REQUEST_BYTES + (1 << 20)
MAX_RECEIVE_BYTES = 16 << 20


@dataclass(frozen=True)
class Connection:
    """How to reach a remote server: TLS and headers (e.g. a bearer token) for every request."""

    ssl: bool = False
    root_certificates: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    max_send_bytes: int = MAX_SEND_BYTES  # gRPC: a larger request fails here, before it is sent

    def client_options(self, protocol: str) -> dict:
        """Keyword arguments for tritonclient's InferenceServerClient (sync or asyncio)."""
        options: dict = {"ssl": True} if self.ssl else {}
        if protocol == "grpc":
            if self.ssl:
                options["root_certificates"] = self.root_certificates
            options["channel_args"] = self._grpc_channel_args()
        return options

    def _grpc_channel_args(self) -> list[tuple[str, int]]:
        """tritonclient's channel defaults (keep-alive), with our message-size limits."""
        from tritonclient.grpc import KeepAliveOptions

        keepalive = KeepAliveOptions()
        return [
            ("grpc.max_send_message_length", self.max_send_bytes),
            ("grpc.max_receive_message_length", MAX_RECEIVE_BYTES),
            ("grpc.keepalive_time_ms", keepalive.keepalive_time_ms),
            ("grpc.keepalive_timeout_ms", keepalive.keepalive_timeout_ms),
            ("grpc.keepalive_permit_without_calls", keepalive.keepalive_permit_without_calls),
            ("grpc.http2.max_pings_without_data", keepalive.http2_max_pings_without_data),
        ]


@dataclass(frozen=True)
class Prediction:
    index: int
    label: str
    probability: float
    logit: float


def pack_images(images: Sequence[bytes]) -> np.ndarray:
    """Encoded images -> UINT8 [N, L], each row zero-padded to the longest image."""
    if not images:
        raise ValueError("no images to send")
    batch = np.zeros((len(images), max(len(image) for image in images)), dtype=np.uint8)
    for row, image in zip(batch, images, strict=True):
        row[: len(image)] = np.frombuffer(image, dtype=np.uint8)
    return batch


def image_lengths(images: Sequence[bytes]) -> np.ndarray:
    """INT64 [N, 1]: the true length of each image, sent beside :func:`pack_images`'s rows."""
    return np.array([[len(image)] for image in images], dtype=np.int64)


def request_inputs(triton, images: Sequence[bytes]) -> list:
    """The ensemble's inputs for ``images`` (``triton``: tritonclient.grpc/http, sync or aio)."""
    batch, lengths = pack_images(images), image_lengths(images)
    image_input = triton.InferInput(ENSEMBLE_INPUT, list(batch.shape), "UINT8")
    image_input.set_data_from_numpy(batch)
    lengths_input = triton.InferInput(ENSEMBLE_LENGTHS, list(lengths.shape), "INT64")
    lengths_input.set_data_from_numpy(lengths)
    return [image_input, lengths_input]


def parse_classification(rows: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Triton's classification output (``class_count`` = every class) -> FP32 [N, classes] logits
    in class order, and the labels the server holds for them.

    Each entry is ``b"<logit>:<index>:<label>"`` (a label may itself contain ":"), best class first.
    """
    rows = np.atleast_2d(rows)
    logits = np.empty(rows.shape, dtype=np.float32)
    names = [""] * rows.shape[1]
    for row, entries in enumerate(rows):
        for entry in entries:
            value, index, label = entry.decode("utf-8").split(":", 2)
            logits[row, int(index)] = float(value)
            names[int(index)] = label
    return logits, names


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def top_k(logits: np.ndarray, names: Sequence[str], k: int = 5) -> list[list[Prediction]]:
    """The ``k`` most probable classes of each row of [N, classes] logits, best first."""
    probabilities = softmax(logits.astype(np.float64))
    best = np.argsort(-logits, axis=-1, kind="stable")[:, :k]
    return [
        [Prediction(int(i), names[i], float(p[i]), float(row[i])) for i in order]
        for row, p, order in zip(logits, probabilities, best, strict=True)
    ]


def image_error(exc) -> str:
    """The server's words for one image's refusal, without the index or where Triton says it failed
    (``in ensemble '...', image 0: ...``)."""
    message = exc.message() if hasattr(exc, "message") else str(exc)
    return message.partition("image 0: ")[2] or message


class TritonClassifier:
    """A client for the ensemble: ``url`` is host:port or grpc://, http://, https://host:port; the
    protocol is ``protocol``, else the URL's scheme, else gRPC."""

    def __init__(
        self,
        url: str | None = None,
        protocol: str | None = None,
        model: str = ENSEMBLE_NAME,
        timeout_s: float = 60.0,
        connection: Connection | None = None,
    ):
        scheme, tls, address = split_url(url) if url else (None, False, None)
        if protocol and scheme and protocol != scheme:
            raise ClientError(f"the URL {url} is {scheme}, but the protocol asked for is {protocol}")
        protocol = protocol or scheme or "grpc"
        if protocol not in PROTOCOLS:
            raise ClientError(f"protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
        self.protocol, self.model, self.timeout_s = protocol, model, timeout_s
        self.connection = connection or Connection()
        if tls:
            self.connection = replace(self.connection, ssl=True)
        self.url = address or DEFAULT_URLS[protocol]
        certificates = self.connection.root_certificates
        if certificates and not Path(certificates).is_file():
            raise ClientError(f"root certificates {certificates} do not exist: give a PEM file")
        if protocol == "grpc":
            import tritonclient.grpc as triton
        else:
            import tritonclient.http as triton
        self._triton = triton
        options = self.connection.client_options(protocol)
        if protocol == "http":
            options["network_timeout"] = timeout_s
        self._client = triton.InferenceServerClient(self.url, **options)

    def _infer(self, images: Sequence[bytes], class_count: int = 0) -> np.ndarray:
        output = self._triton.InferRequestedOutput(ENSEMBLE_OUTPUT, class_count=class_count)
        extra = {"client_timeout": self.timeout_s} if self.protocol == "grpc" else {}
        headers = self.connection.headers or None
        inputs = request_inputs(self._triton, images)
        # The request's own timeout too: the server drops it from its queue once this client gives up.
        timeout_us = int(self.timeout_s * 1_000_000)
        result = self._client.infer(self.model, inputs, outputs=[output], headers=headers, timeout=timeout_us, **extra)
        return result.as_numpy(ENSEMBLE_OUTPUT)

    def logits(self, images: Sequence[bytes]) -> np.ndarray:
        """FP32 [N, classes] logits for N encoded images, sent as one request."""
        return self._infer(images)

    @cached_property
    def _served(self) -> tuple[int, int]:
        """(max batch size, classes) of the served model, from its config (one request, once)."""
        from google.protobuf import json_format

        headers = self.connection.headers or None
        config = self._client.get_model_config(self.model, headers=headers)
        if not isinstance(config, dict):  # gRPC: a ModelConfigResponse; HTTP already gives the config as JSON
            config = json_format.MessageToDict(config.config, preserving_proto_field_name=True)
        output = next((o for o in config.get("output", []) if o["name"] == ENSEMBLE_OUTPUT), None)
        if output is None:  # e.g. a step of the ensemble
            raise ClientError(f"model {self.model} gives no {ENSEMBLE_OUTPUT} (classes): call a model resnet-serve "
                              f"serves for clients, e.g. {ENSEMBLE_NAME}")  # fmt: skip
        return int(config.get("max_batch_size", 0)), int(output["dims"][-1])

    def num_classes(self) -> int:
        """The classes of the served model (its output's dims)."""
        return self._served[1]

    def max_batch_size(self) -> int:
        """The most images the served model takes in one request (0: it does not batch)."""
        return self._served[0]

    def labelled_logits(self, images: Sequence[bytes]) -> tuple[np.ndarray, list[str]]:
        """FP32 [N, classes] logits and the labels the server holds for the classes, in one request
        (Triton's classification extension asked for every class): never a bundled copy."""
        return parse_classification(self._infer(images, class_count=self.num_classes()))

    def classify(self, images: Sequence[bytes], k: int = 5) -> tuple[list[list[Prediction]], float]:
        """Top-``k`` predictions per image, labelled by the server, and the latency in milliseconds."""
        self.num_classes()  # the model's config, asked before the clock starts
        start = time.perf_counter()
        logits, names = self.labelled_logits(images)
        return top_k(logits, names, k), (time.perf_counter() - start) * 1000.0

    def classify_each(self, images: Sequence[bytes], k: int = 5) -> tuple[list[list[Prediction] | str], float, int]:
        """Every image's top-``k``, or its own error message, however many images: requests of at most
        the server's max batch; a request refused for a bad image is sent again one image at a time,
        so the others' answers are kept. Returns the results, the total latency in ms and the requests sent."""
        from tritonclient.utils import InferenceServerException

        self.num_classes()  # the model's config first: an unreachable server fails here, once
        size = max(1, self.max_batch_size())
        results: list[list[Prediction] | str] = []
        latency_ms, requests = 0.0, 0
        for start in range(0, len(images), size):
            group = images[start : start + size]
            try:
                answers, spent = self.classify(group, k)
                results.extend(answers)
                latency_ms, requests = latency_ms + spent, requests + 1
                continue
            except InferenceServerException as exc:
                if len(group) == 1:
                    results.append(image_error(exc))
                    requests += 1
                    continue
            for image in group:  # which image was refused: the others' answers are kept
                try:
                    (answer,), spent = self.classify([image], k)
                    results.append(answer)
                    latency_ms += spent
                except InferenceServerException as exc:
                    results.append(image_error(exc))
                requests += 1
        return results, latency_ms, requests

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> TritonClassifier:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif"}  # images.checks.ALLOWED_FORMATS


def image_paths(paths: Sequence[Path | str]) -> list[Path]:
    """Files as given; directories expand to the image files in them (not in their subfolders), sorted."""
    found = []
    for path in map(Path, paths):
        if path.is_dir():
            inside = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            if not inside:
                raise FileNotFoundError(f"folder {path} holds no image files ({', '.join(sorted(IMAGE_SUFFIXES))}; "
                                        "subfolders are not read)")  # fmt: skip
            found.extend(inside)
        elif path.is_file():
            found.append(path)
        else:
            raise FileNotFoundError(f"image {path} does not exist")
    return found


def read_images(paths: Sequence[Path | str]) -> list[bytes]:
    """Read image files (directories: the images in them) as bytes."""
    return [path.read_bytes() for path in image_paths(paths)]
