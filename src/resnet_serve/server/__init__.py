"""Running tritonserver: find the binary (:mod:`.binary`), run one process (:mod:`.process`), keep it
serving (:mod:`.supervise`)."""

from resnet_serve.server.binary import ServerBinary, ServerError, find_server, server_environment
from resnet_serve.server.process import (
    LIVE_PATH,
    READY_PATH,
    ServerSettings,
    TritonServer,
    free_port,
)
from resnet_serve.server.supervise import StubWatch, expected_stub_count, supervise, visible_gpu_count

__all__ = [
    "LIVE_PATH",
    "READY_PATH",
    "ServerBinary",
    "ServerError",
    "ServerSettings",
    "StubWatch",
    "TritonServer",
    "expected_stub_count",
    "find_server",
    "free_port",
    "server_environment",
    "supervise",
    "visible_gpu_count",
]
