"""``resnet-serve serve``: run tritonserver on a repository until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import signal
import threading
from pathlib import Path

from resnet_serve.cli.common import DEFAULT_REPOSITORY, DEFAULT_WORKDIR, add_server_options, find_server
from resnet_serve.progress import say, step, warn

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def add_parser(commands) -> argparse.ArgumentParser:
    parser = commands.add_parser(
        "serve",
        help="run tritonserver on a repository until Ctrl-C",
        description="Start tritonserver on the repository and keep it running; Ctrl-C or "
        "SIGTERM drains in-flight requests and stops it.",
    )
    parser.add_argument(
        "--repository", default=str(DEFAULT_REPOSITORY), help=f"model repository (default {DEFAULT_REPOSITORY})"
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--public", action="store_true", help="listen on all interfaces (0.0.0.0), with a warning")
    parser.add_argument("--http-port", type=int, default=8000)
    parser.add_argument("--grpc-port", type=int, default=8001)
    parser.add_argument("--metrics-port", type=int, default=8002)
    parser.add_argument("--log-file", default=str(DEFAULT_WORKDIR / "tritonserver.log"))
    parser.add_argument("--log-verbose", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for readiness")
    parser.add_argument(
        "--model-control-key",
        metavar="HEADER=VALUE",
        help="allow model load/unload (Triton's explicit mode) to requests carrying this header; default: off",
    )
    parser.add_argument(
        "triton_args",
        nargs="*",
        metavar="-- TRITON_ARG",
        help="after --, more tritonserver arguments (e.g. -- --grpc-use-ssl=true --grpc-server-cert=...)",
    )
    parser.add_argument(
        "--cuda-memory-pool-mb",
        type=int,
        help="GPU memory pool for tensors passed between steps (default: 1024 for --device cuda repositories, else 0)",
    )
    add_server_options(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    from resnet_serve.contract import ENSEMBLE_NAME
    from resnet_serve.repository import read_marker, require_current_models
    from resnet_serve.server import GPU_TENSOR_POOL_BYTES, ServerSettings, TritonServer

    host = "0.0.0.0" if args.public else args.host
    if host not in LOOPBACK:
        warn(f"listening on {host}: anyone who can reach this machine can use the server")
    repository = Path(args.repository)
    if not (repository / ENSEMBLE_NAME / "config.pbtxt").is_file():
        say(f"error: {repository} holds no model repository; run `resnet-serve repo` (or `resnet-serve demo`) first")
        return 2
    require_current_models(repository)
    if args.cuda_memory_pool_mb is not None:
        pool_bytes = args.cuda_memory_pool_mb << 20
    else:
        pool_bytes = GPU_TENSOR_POOL_BYTES if read_marker(repository).get("gpu_tensors") else 0
    settings = ServerSettings(
        repository=repository.resolve(),
        host=host,
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        metrics_port=args.metrics_port,
        log_verbose=args.log_verbose,
        cuda_memory_pool_bytes=pool_bytes,
        cuda_memory_pool_gpus=read_marker(repository).get("gpus", [0]),
        model_control_key=args.model_control_key,
        extra_args=args.triton_args,
    )
    server = TritonServer(settings, binary=find_server(args), log_path=Path(args.log_file).resolve())
    with step(f"Starting tritonserver ({server.binary.executable})"):
        server.start(args.timeout)
    say(f"Ready. gRPC {server.grpc_url}  HTTP {server.http_url}  metrics {server.metrics_url}")
    say(f"Server log: {server.log_path}. Ctrl-C stops it.")
    return _run_until_signal(server)


def _run_until_signal(server) -> int:
    """Serve (restarting the server if a stub or the server dies) until SIGINT/SIGTERM; then stop."""
    from resnet_serve.server import supervise

    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        status = supervise(server, stop, say)
        if stop.is_set():
            say("Draining in-flight requests, then stopping tritonserver ...")
            if not server.wait_idle(timeout=30.0):
                say("requests still arriving after 30 s: stopping anyway")
        return status
    finally:
        server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
