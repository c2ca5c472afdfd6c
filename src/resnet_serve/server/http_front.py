"""serve's HTTP front: KServe v2 over HTTP, answered here and forwarded to tritonserver over gRPC.

Triton 2.51's own HTTP front end crashes on single small requests (access.py), so tritonserver runs
without HTTP and this process answers HTTP in its place: health, server and model metadata, model
config and statistics, and inference with JSON tensors or Triton's binary tensor extension,
classification (``class_count``) included. Every request is checked before anything parses it deeply:
its method and path, content type and encoding, body size (the largest valid request and no more),
JSON depth, then each tensor's name, datatype, shape and byte count against the model's own metadata.
Only then is it sent, as a protobuf, to tritonserver's gRPC port on loopback. Nothing here reaches
Triton's admin APIs (repository, shared memory, logging, trace): those stay on gRPC behind the key.

Run by TritonServer as ``python -m resnet_serve.server.http_front`` (a process of its own: a core of
its own, and it stops with serve by its parent-death signal).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import math
import re
import signal
import struct
import time
from dataclasses import dataclass

import grpc
import numpy as np
from aiohttp import web
from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from tritonclient.grpc import service_pb2, service_pb2_grpc

from resnet_serve.contract import DEFAULT_MAX_REQUEST_BYTES

# The binary tensor extension: the JSON header's length, the rest of the body is the tensors' bytes.
HEADER_LENGTH = "Inference-Header-Content-Length"
# JSON bodies and headers above this size are refused: a JSON list of image bytes costs ~4 characters
# and a Python object per byte to parse (measured: 8 MiB of JSON in ~0.15 s); images go as binary.
MAX_JSON_BYTES = 8 << 20
JSON_CONTENT_TYPES = ("", "application/json", "application/octet-stream", "text/plain")
DATATYPES = {
    "BOOL": np.bool_, "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32, "UINT64": np.uint64,
    "INT8": np.int8, "INT16": np.int16, "INT32": np.int32, "INT64": np.int64,
    "FP16": np.float16, "FP32": np.float32, "FP64": np.float64,
}  # fmt: skip
CONTRACT_TTL_S = 10.0  # how long a model's metadata is trusted before it is asked again
# A body not read in full by then is refused (408): a client that stops sending (or sends a bad chunk)
# otherwise held its connection and up to 257 MiB of body for as long as it liked (seen: 477 s).
BODY_TIMEOUT_S = 60.0
_MODEL_PATH = re.compile(r"^/v2/models/(?P<model>[^/]+)(?:/versions/(?P<version>[0-9]{1,18}))?(?P<rest>/[a-z]+)?$")
_GRPC_TO_HTTP = {
    grpc.StatusCode.INVALID_ARGUMENT: 400, grpc.StatusCode.OUT_OF_RANGE: 400, grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.NOT_FOUND: 404, grpc.StatusCode.UNAVAILABLE: 503, grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429, grpc.StatusCode.UNIMPLEMENTED: 501, grpc.StatusCode.CANCELLED: 499,
}  # fmt: skip


_log = logging.getLogger(__name__)


class BadRequest(Exception):
    """A request refused with an HTTP status and a message that says why."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Tensor:
    datatype: str
    shape: tuple[int, ...]  # -1: any size; the batch dimension included where the model batches


@dataclass(frozen=True)
class Contract:
    """What a model takes and gives, from its gRPC metadata."""

    inputs: dict[str, Tensor]
    outputs: dict[str, Tensor]

    @classmethod
    def from_metadata(cls, metadata: service_pb2.ModelMetadataResponse) -> Contract:
        def tensors(entries) -> dict[str, Tensor]:
            return {entry.name: Tensor(entry.datatype, tuple(entry.shape)) for entry in entries}

        return cls(tensors(metadata.inputs), tensors(metadata.outputs))


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int = DEFAULT_MAX_REQUEST_BYTES + (1 << 20)  # a largest image tensor and its JSON header
    max_json_bytes: int = MAX_JSON_BYTES
    body_timeout_s: float = BODY_TIMEOUT_S


# --- requests -----------------------------------------------------------------------------------


def parse_json(data: bytes, what: str) -> dict:
    """A JSON object, or BadRequest. CPython's parser raises RecursionError past its depth limit (a
    body nesting 50,000 arrays crashed Triton's own parser): that is the client's error too."""
    try:
        value = json.loads(data)
    except RecursionError:
        raise BadRequest(f"{what}: JSON nested too deeply") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadRequest(f"{what}: not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise BadRequest(f"{what}: expected a JSON object, got {type(value).__name__}")
    return value


def split_body(body: bytes, header_length: str | None, limits: Limits) -> tuple[dict, bytes | memoryview]:
    """The JSON header and the binary tensor data of an infer body."""
    if header_length is None:
        if len(body) > limits.max_json_bytes:
            raise BadRequest(
                f"a JSON body of {len(body)} bytes exceeds the limit of {limits.max_json_bytes}; "
                f"send tensors with the binary extension ({HEADER_LENGTH})",
                413,
            )
        return parse_json(body, "request"), b""
    if not header_length.isdigit() or not 0 < int(header_length) <= min(len(body), limits.max_json_bytes):
        raise BadRequest(f"{HEADER_LENGTH} must be 1 to {min(len(body), limits.max_json_bytes)}, got {header_length!r}")
    cut = int(header_length)
    return parse_json(body[:cut], "request header"), memoryview(body)[cut:]  # a view: tensors are copied once


def _int(value, what: str, low: int = 0, high: int = 2**31 - 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise BadRequest(f"{what} must be an integer from {low} to {high}, got {str(value)[:40]}")
    return value


def _checked_shape(name: str, shape, expected: Tensor, max_bytes: int) -> tuple[int, ...]:
    if not isinstance(shape, list) or len(shape) != len(expected.shape):
        raise BadRequest(f"input {name!r}: expected a shape of {len(expected.shape)} dimensions, got {str(shape)[:80]}")
    dims = tuple(_int(dim, f"input {name!r}: shape", 0, max_bytes) for dim in shape)
    for got, want in zip(dims, expected.shape, strict=True):
        if want != -1 and got != want:
            raise BadRequest(f"input {name!r}: expected shape {list(expected.shape)}, got {list(dims)}")
    size = math.prod(dims) * np.dtype(DATATYPES[expected.datatype]).itemsize
    if size > max_bytes:
        raise BadRequest(f"input {name!r}: {size} bytes exceeds the limit of {max_bytes}", 413)
    return dims


def _json_data(name: str, data, datatype: str, count: int) -> bytes:
    """A JSON ``data`` list (flat or nested, row-major) as the tensor's raw bytes."""
    try:
        array = np.asarray(data)
    except ValueError:
        raise BadRequest(f"input {name!r}: data is not a rectangular list of numbers") from None
    kinds = "b" if datatype == "BOOL" else ("iub" if datatype[0] in "IU" else "iuf")
    if array.dtype.kind not in kinds:
        raise BadRequest(f"input {name!r}: expected {datatype} numbers, got {str(data)[:40]}")
    if array.size != count:
        raise BadRequest(f"input {name!r}: its shape holds {count} values, data has {array.size}")
    target = np.dtype(DATATYPES[datatype])
    if (
        target.kind in "iu"
        and array.size
        and (array.min() < np.iinfo(target).min or array.max() > np.iinfo(target).max)
    ):
        raise BadRequest(f"input {name!r}: values out of {datatype}'s range")
    return array.astype(target).tobytes()


def infer_request(
    model: str, version: str, header: dict, binary: bytes | memoryview, contract: Contract, limits: Limits
):
    """The gRPC request for an HTTP infer body's header and binary part, checked against ``contract``.
    Returns it and the outputs to send back as binary (the rest go back as JSON)."""
    inputs = header.get("inputs")
    if not isinstance(inputs, list) or not 0 < len(inputs) <= len(contract.inputs):
        raise BadRequest(f"'inputs' must list 1 to {len(contract.inputs)} tensors ({', '.join(contract.inputs)})")
    request = service_pb2.ModelInferRequest(model_name=model, model_version=version)
    if "id" in header:
        if not isinstance(header["id"], str) or len(header["id"]) > 256 or not header["id"].isprintable():
            raise BadRequest("'id' must be a string of up to 256 printable characters")
        request.id = header["id"]
    asked = header.get("parameters") or {}
    if isinstance(asked, dict) and "timeout" in asked:  # microseconds; the first step's queue honours it
        request.parameters["timeout"].int64_param = _int(asked["timeout"], "parameters.timeout", 0, 2**63 - 1)
    offset, seen = 0, set()
    for entry in inputs:
        if not isinstance(entry, dict):
            raise BadRequest("each input must be a JSON object")
        name = entry.get("name")
        if name not in contract.inputs or name in seen:
            raise BadRequest(f"input {str(name)[:60]!r}: expected one of {', '.join(contract.inputs)}, each once")
        seen.add(name)
        expected = contract.inputs[name]
        if entry.get("datatype") != expected.datatype or expected.datatype not in DATATYPES:
            raise BadRequest(
                f"input {name!r}: expected datatype {expected.datatype}, got {str(entry.get('datatype'))[:20]}"
            )
        dims = _checked_shape(name, entry.get("shape"), expected, limits.max_body_bytes)
        size = math.prod(dims) * np.dtype(DATATYPES[expected.datatype]).itemsize
        parameters = entry.get("parameters") or {}
        if not isinstance(parameters, dict):
            raise BadRequest(f"input {name!r}: 'parameters' must be an object")
        if "binary_data_size" in parameters:
            length = _int(parameters["binary_data_size"], f"input {name!r}: binary_data_size", 0, len(binary) - offset)
            if length != size:
                raise BadRequest(
                    f"input {name!r}: shape {list(dims)} needs {size} bytes, binary_data_size says {length}"
                )
            raw = bytes(binary[offset : offset + length])
            offset += length
        elif "data" in entry:
            raw = _json_data(name, entry["data"], expected.datatype, math.prod(dims))
        else:
            raise BadRequest(f"input {name!r}: needs 'data' or parameters.binary_data_size")
        tensor = request.inputs.add(name=name, datatype=expected.datatype)
        tensor.shape.extend(dims)
        request.raw_input_contents.append(raw)
    if offset != len(binary):
        raise BadRequest(f"the body holds {len(binary)} bytes after its header, the inputs declare {offset}")
    return request, _requested_outputs(request, header, contract)


def _requested_outputs(request, header: dict, contract: Contract) -> set[str]:
    parameters = header.get("parameters") or {}
    default_binary = isinstance(parameters, dict) and parameters.get("binary_data_output") is True
    outputs = header.get("outputs")
    if outputs is None:
        return set(contract.outputs) if default_binary else set()
    if not isinstance(outputs, list) or len(outputs) > len(contract.outputs):
        raise BadRequest(f"'outputs' must list up to {len(contract.outputs)} tensors ({', '.join(contract.outputs)})")
    binary = set()
    for entry in outputs:
        name = entry.get("name") if isinstance(entry, dict) else None
        if name not in contract.outputs:
            raise BadRequest(f"output {str(name)[:60]!r}: expected one of {', '.join(contract.outputs)}")
        wanted = request.outputs.add(name=name)
        options = entry.get("parameters") or {}
        if not isinstance(options, dict):
            raise BadRequest(f"output {name!r}: 'parameters' must be an object")
        if "classification" in options:
            wanted.parameters["classification"].int64_param = _int(options["classification"], "classification", 1)
        if options.get("binary_data", default_binary) is True:
            binary.add(name)
    return binary


# --- responses ----------------------------------------------------------------------------------


def _bytes_elements(raw: bytes) -> list[str]:
    """Triton's BYTES tensor (4-byte little-endian length before each element) as strings."""
    elements, pos = [], 0
    while pos + 4 <= len(raw):
        (length,) = struct.unpack_from("<I", raw, pos)
        elements.append(raw[pos + 4 : pos + 4 + length].decode("utf-8", "replace"))
        pos += 4 + length
    return elements


def infer_body(response: service_pb2.ModelInferResponse, binary: set[str]) -> tuple[bytes, dict[str, str]]:
    """The HTTP body and headers of a gRPC infer response: outputs in ``binary`` after the JSON header."""
    outputs, tail = [], []
    for tensor, raw in zip(response.outputs, response.raw_output_contents, strict=True):
        entry = {"name": tensor.name, "datatype": tensor.datatype, "shape": list(tensor.shape)}
        if tensor.name in binary:
            entry["parameters"] = {"binary_data_size": len(raw)}
            tail.append(raw)
        elif tensor.datatype == "BYTES":
            entry["data"] = _bytes_elements(raw)
        else:
            entry["data"] = np.frombuffer(raw, DATATYPES[tensor.datatype]).tolist()
        outputs.append(entry)
    header = {"model_name": response.model_name, "model_version": response.model_version, "outputs": outputs}
    if response.id:
        header["id"] = response.id
    text = _dumps(header).encode()
    if not tail:
        return text, {"Content-Type": "application/json"}
    return b"".join([text, *tail]), {"Content-Type": "application/octet-stream", HEADER_LENGTH: str(len(text))}


def message_json(message) -> dict:
    """A protobuf message as Triton's HTTP shows it: field names as declared, 64-bit integers as numbers
    (protobuf's JSON writes them as strings, which clients that read dims as numbers refuse)."""
    return _numbers(message, json_format.MessageToDict(message, preserving_proto_field_name=True))


_INT64 = {
    FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_SINT64,
    FieldDescriptor.TYPE_FIXED64, FieldDescriptor.TYPE_SFIXED64,
}  # fmt: skip


def _numbers(message, value: dict) -> dict:
    for field in message.DESCRIPTOR.fields:
        if field.name not in value:
            continue
        kind = field.type
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            value_field = field.message_type.fields_by_name["value"]
            if value_field.message_type is not None:
                for key, item in getattr(message, field.name).items():
                    _numbers(item, value[field.name][str(key)])
        elif field.message_type is not None:
            items = getattr(message, field.name)
            if isinstance(value[field.name], list):
                for item, entry in zip(items, value[field.name], strict=True):
                    _numbers(item, entry)
            else:
                _numbers(items, value[field.name])
        elif kind in _INT64:
            entry = value[field.name]
            value[field.name] = [int(v) for v in entry] if isinstance(entry, list) else int(entry)
    return value


# --- the server ---------------------------------------------------------------------------------


def _dumps(value) -> str:
    """Compact JSON, as Triton writes it."""
    return json.dumps(value, separators=(",", ":"))


def _json(value, status: int = 200) -> web.Response:
    return web.json_response(value, status=status, dumps=_dumps)


def _error(status: int, message: str) -> web.Response:
    return _json({"error": message}, status)


class HttpFront:
    """The aiohttp application: one gRPC channel to tritonserver, each model's contract cached."""

    def __init__(self, grpc_target: str, models: tuple[str, ...], limits: Limits = Limits()):
        """``models``: the models clients call (the ensembles); the steps inside them take no requests
        here (a 20 KB request of 256 tiny images to the preprocess step made a 732 MB JSON answer)."""
        self.grpc_target, self.models, self.limits = grpc_target, models, limits
        self.contracts: dict[tuple[str, str], tuple[float, Contract]] = {}
        self.channel: grpc.aio.Channel | None = None
        self.stub: service_pb2_grpc.GRPCInferenceServiceStub | None = None

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self.limits.max_body_bytes, middlewares=[self._guard])
        app.router.add_route("*", "/{tail:.*}", self._route)
        app.on_startup.append(self._open)
        app.on_cleanup.append(self._close)
        return app

    async def _open(self, app) -> None:
        size = self.limits.max_body_bytes
        options = [("grpc.max_send_message_length", size), ("grpc.max_receive_message_length", size)]
        self.channel = grpc.aio.insecure_channel(self.grpc_target, options=options)
        self.stub = service_pb2_grpc.GRPCInferenceServiceStub(self.channel)

    async def _close(self, app) -> None:
        if self.channel is not None:
            await self.channel.close()

    @web.middleware
    async def _guard(self, request: web.Request, handler):
        """Every failure is the request's own, as JSON: a BadRequest its status, gRPC's its mapped one."""
        try:
            return await handler(request)
        except BadRequest as exc:
            return _error(exc.status, str(exc))
        except web.HTTPRequestEntityTooLarge:
            return _error(413, f"body exceeds the limit of {self.limits.max_body_bytes} bytes")
        except web.HTTPException as exc:  # aiohttp's own answers (e.g. 404 for `OPTIONS *`), as JSON
            return _error(exc.status, exc.reason)
        except grpc.aio.AioRpcError as exc:
            return _error(_GRPC_TO_HTTP.get(exc.code(), 500), exc.details() or exc.code().name)
        except Exception:  # a bug here: logged with its traceback, answered without it
            _log.exception("HTTP front: %s %s failed", request.method, request.path[:100])
            return _error(500, "internal error in the HTTP front (see serve's log)")

    async def _route(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        if request.method == "GET" and path == "/v2/health/live":
            answer = await self.stub.ServerLive(service_pb2.ServerLiveRequest(), timeout=5)
            return web.Response(status=200 if answer.live else 503)
        if request.method == "GET" and path == "/v2/health/ready":
            answer = await self.stub.ServerReady(service_pb2.ServerReadyRequest(), timeout=5)
            return web.Response(status=200 if answer.ready else 503)
        if request.method == "GET" and path in ("/v2", "/v2/"):
            metadata = await self.stub.ServerMetadata(service_pb2.ServerMetadataRequest(), timeout=5)
            return _json(message_json(metadata))
        if request.method == "GET" and path == "/v2/models/stats":  # every model's
            stats = await self.stub.ModelStatistics(service_pb2.ModelStatisticsRequest(), timeout=5)
            return _json(message_json(stats))
        found = _MODEL_PATH.match(path)
        if found is None:
            raise BadRequest(f"not found: {path[:100]!r} (this port serves KServe v2 inference; admin APIs: gRPC)", 404)
        model, version, rest = (
            found["model"],
            str(int(found["version"])) if found["version"] else "",
            found["rest"] or "",
        )
        if request.method == "POST" and rest == "/infer":
            if model not in self.models:
                raise BadRequest(
                    f"model {model[:100]!r} takes no requests here; it serves {', '.join(self.models)}", 404
                )
            return await self._infer(request, model, version)
        if request.method != "GET":
            raise BadRequest(f"{request.method} {path[:100]!r} is not served", 405)
        if rest == "":
            return _json(message_json(await self._metadata(model, version)))
        if rest == "/ready":
            answer = await self.stub.ModelReady(service_pb2.ModelReadyRequest(name=model, version=version), timeout=5)
            return web.Response(status=200 if answer.ready else 400)
        if rest == "/config":
            config = await self.stub.ModelConfig(service_pb2.ModelConfigRequest(name=model, version=version), timeout=5)
            return _json(message_json(config.config))
        if rest == "/stats":
            stats = await self.stub.ModelStatistics(
                service_pb2.ModelStatisticsRequest(name=model, version=version), timeout=5
            )
            return _json(message_json(stats))
        raise BadRequest(f"not found: {path[:100]!r}", 404)

    async def _metadata(self, model: str, version: str) -> service_pb2.ModelMetadataResponse:
        return await self.stub.ModelMetadata(service_pb2.ModelMetadataRequest(name=model, version=version), timeout=5)

    async def _contract(self, model: str, version: str) -> Contract:
        cached = self.contracts.get((model, version))
        if cached and time.monotonic() - cached[0] < CONTRACT_TTL_S:
            return cached[1]
        contract = Contract.from_metadata(await self._metadata(model, version))
        self.contracts[(model, version)] = (time.monotonic(), contract)
        return contract

    async def _infer(self, request: web.Request, model: str, version: str) -> web.Response:
        content_type = request.content_type if request.headers.get("Content-Type") else ""
        if content_type not in JSON_CONTENT_TYPES:
            raise BadRequest(f"content type {content_type[:60]!r} is not served: send application/json", 415)
        if request.headers.get("Content-Encoding", "identity").lower() != "identity":
            raise BadRequest("compressed request bodies are not served: send them uncompressed", 415)
        if request.content_length is not None and request.content_length > self.limits.max_body_bytes:
            raise BadRequest(
                f"body of {request.content_length} bytes exceeds the limit of {self.limits.max_body_bytes}", 413
            )
        contract = await self._contract(model, version)
        try:
            body = await asyncio.wait_for(request.read(), self.limits.body_timeout_s)
        except asyncio.TimeoutError:  # Python 3.10's is not the builtin TimeoutError
            raise BadRequest(f"the body was not sent in full within {self.limits.body_timeout_s:g} s", 408) from None
        except BaseException:
            # A client gone mid-body leaves what it sent in a reference cycle that only the cyclic
            # collector frees: ten abandoned 250 MiB uploads held 3.2 GB until it happened to run.
            asyncio.get_running_loop().call_soon(gc.collect)
            raise
        header, binary = split_body(body, request.headers.get(HEADER_LENGTH), self.limits)
        grpc_request, binary_outputs = infer_request(model, version, header, binary, contract, self.limits)
        del body, binary
        response = await self.stub.ModelInfer(grpc_request)
        payload, headers = infer_body(response, binary_outputs)
        return web.Response(body=payload, headers=headers)


async def serve(front: HttpFront, host: str, port: int) -> None:
    """Serve ``front`` on host:port until SIGTERM or SIGINT."""
    runner = web.AppRunner(
        front.app(),
        access_log=None,
        keepalive_timeout=30,
        # Request line and header fields as Triton's clients send them and no larger (aiohttp answers 400).
        max_line_size=8190,
        max_field_size=8190,
        max_headers=64,
        auto_decompress=False,  # compressed bodies are refused, never inflated (a small gzip body can be huge)
    )
    await runner.setup()
    await web.TCPSite(runner, host.strip("[]"), port).start()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m resnet_serve.server.http_front", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    parser.add_argument("--grpc", required=True, help="tritonserver's gRPC address, HOST:PORT")
    parser.add_argument("--models", required=True, help="the models that take requests, comma-separated")
    parser.add_argument(
        "--max-body-bytes", type=int, default=Limits.max_body_bytes, help="largest request body (default: 257 MiB)"
    )
    parser.add_argument(
        "--body-timeout-s", type=float, default=BODY_TIMEOUT_S, help=f"time to send a body (default {BODY_TIMEOUT_S:g})"
    )
    args = parser.parse_args(argv)
    # aiohttp logs each malformed request a client sends (a bad chunk, a request line without Host, a
    # connection reset mid-body) as a 20-line traceback in serve's log: 673 bytes per 18 sent, 3.4 MB in
    # 4 s. The client gets its 400; failures of this front's own code are still logged (_guard).
    logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)
    limits = Limits(max_body_bytes=args.max_body_bytes, body_timeout_s=args.body_timeout_s)
    front = HttpFront(args.grpc, tuple(args.models.split(",")), limits)
    asyncio.run(serve(front, args.host, args.port))


if __name__ == "__main__":
    main()
