"""``resnet-serve serve``: run tritonserver on a repository until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import threading
from collections.abc import Mapping
from pathlib import Path

from resnet_serve.cli.common import (
    DEFAULT_REPOSITORY,
    DEFAULT_WORKDIR,
    PORT,
    add_server_options,
    duration,
    find_server,
    whole_number,
)
from resnet_serve.progress import say, step, warn
from resnet_serve.server.access import AccessError, parse_key
from resnet_serve.server.mps import MPS_MODES
from resnet_serve.server.process import START_TIMEOUT_S

LOOPBACK = ("127.0.0.1", "localhost", "::1")
KEY_VARIABLE = "RESNET_SERVE_MODEL_CONTROL_KEY"


def model_control_key(args: argparse.Namespace, environ: Mapping[str, str] = os.environ) -> str | None:
    """The admin key asked for: the first line of --model-control-key-file, else --model-control-key,
    else $RESNET_SERVE_MODEL_CONTROL_KEY; None: serve makes a random one."""
    if args.model_control_key_file:
        path = Path(args.model_control_key_file)
        source = f"--model-control-key-file {path}"
        try:
            lines = path.read_text().splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise AccessError(f"{source}: cannot read it ({exc.__class__.__name__})") from None
        if not lines or not lines[0].strip():
            raise AccessError(f"{source}: its first line must be HEADER=VALUE, got nothing")
        key = lines[0].strip()
    elif args.model_control_key:
        key, source = args.model_control_key, "--model-control-key"
    else:
        key, source = environ.get(KEY_VARIABLE, ""), f"${KEY_VARIABLE}"
    if key:
        parse_key(key, source)  # a malformed key fails here, in one line that does not show it
    return key or None


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
    parser.add_argument(
        "--http-port",
        type=PORT,
        default=8000,
        help="KServe v2 HTTP port, answered by serve itself (Triton's own HTTP never starts) (default 8000)",
    )
    parser.add_argument("--grpc-port", type=PORT, default=8001, help="tritonserver's gRPC port (default 8001)")
    parser.add_argument(
        "--metrics-port",
        type=PORT,
        default=8002,
        help="GET-only port for probes and Prometheus: /v2/health/live, /v2/health/ready (every model), /metrics "
        "(default 8002)",
    )
    parser.add_argument(
        "--public-http",
        action="store_true",
        help="the HTTP port on --host too (default: 127.0.0.1 only)",
    )
    log = DEFAULT_WORKDIR / "tritonserver.log"
    parser.add_argument("--log-file", default=str(log), help=f"where tritonserver's log goes (default {log})")
    parser.add_argument(
        "--log-verbose", type=whole_number(0), default=0, help="tritonserver's --log-verbose level (default 0)"
    )
    parser.add_argument(
        "--timeout",
        type=duration(),
        default=START_TIMEOUT_S,
        help=f"readiness wait in s (default {START_TIMEOUT_S:.0f})",
    )
    key = parser.add_mutually_exclusive_group()
    key.add_argument(
        "--model-control-key-file",
        metavar="FILE",
        help="allow model load/unload, shared memory, logging and trace settings to requests carrying the header "
        f"HEADER=VALUE of this file's first line (or ${KEY_VARIABLE}); default: a random key only serve knows",
    )
    key.add_argument(
        "--model-control-key",
        metavar="HEADER=VALUE",
        help="the same key given on the command line, which `ps` shows to everyone on the machine",
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
        help="GPU memory pool for tensors passed between steps (default for two-step GPU repositories: 4096 on GPUs "
        "of 64+ GiB, else 1024; 0 for others)",
    )
    parser.add_argument(
        "--mps",
        choices=MPS_MODES,
        default="auto",
        help="GPU repositories: a private NVIDIA MPS daemon, so the instances of a GPU run on it at once "
        "(auto: where it works, else without; default auto)",
    )
    add_server_options(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    from resnet_serve.gpu_placement import tensor_pool_bytes
    from resnet_serve.repository import model_description, read_markers, require_current_models
    from resnet_serve.server import ServerSettings, TritonServer
    from resnet_serve.server.front import StatusFront
    from resnet_serve.server.process import check_triton_args

    check_triton_args(args.triton_args)  # before the repository is read: a stray word is the first mistake
    admin_key = model_control_key(args)
    host = "0.0.0.0" if args.public else args.host
    if host not in LOOPBACK:
        warn(f"listening on {host}: anyone who can reach this machine can use the server")
    repository = Path(args.repository)
    models = read_markers(repository)
    if not models or not all((repository / name / "config.pbtxt").is_file() for name in models):
        say(f"error: {repository} holds no model repository; run `resnet-serve repo` (or `resnet-serve demo`) first")
        return 2
    require_current_models(repository)
    if args.cuda_memory_pool_mb is not None:
        pool_bytes = args.cuda_memory_pool_mb << 20
    else:
        pool_bytes = tensor_pool_bytes(any(entry.get("gpu_tensors") for entry in models.values()))
    settings = ServerSettings(
        repository=repository.resolve(),
        models=tuple(models),
        host=host,
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        log_verbose=args.log_verbose,
        cuda_memory_pool_bytes=pool_bytes,
        gpus=sorted({gpu for entry in models.values() for gpu in entry.get("gpus", [])}),
        mps=args.mps,
        model_control_key=admin_key,
        extra_args=args.triton_args,
        public_http=args.public_http,
    )
    server = TritonServer(settings, binary=find_server(args), log_path=Path(args.log_file).resolve())

    # SIGINT/SIGTERM: while starting, interrupt (start() stops what it started); once serving, drain and stop.
    stop = threading.Event()
    with _on_signals(_interrupt), StatusFront(host, args.metrics_port, server.is_serving, server.metrics) as front:
        try:
            with step(f"Starting tritonserver ({server.binary.executable})"):
                server.start(args.timeout)
            with _on_signals(lambda *_: stop.set()):
                say(f"Ready. gRPC {server.grpc_url}  HTTP {server.http_url}  metrics and health {front.url}")
                if server.gpu_sharing:
                    say(f"GPUs {', '.join(map(str, settings.gpus))}: {server.gpu_sharing}")
                for name, entry in models.items():
                    say(f"Model {name}: {model_description(entry) or 'no description recorded'}")
                    if "precision" in entry:
                        say(f"  classifier {entry['classifier']}: {entry['precision']}")
                say(f"Server log: {server.log_path}. Ctrl-C stops it.")
                return _serve_until(server, stop)
        finally:
            server.stop()


def _interrupt(*_) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def _on_signals(handler):
    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _serve_until(server, stop: threading.Event) -> int:
    """Serve (recovering the server if a stub or the server dies) until ``stop``; then drain."""
    from resnet_serve.server import supervise

    status = supervise(server, stop, say)
    say("Draining in-flight requests, then stopping tritonserver ...")
    if not server.wait_idle(timeout=30.0):
        say("requests still arriving after 30 s: stopping anyway")
    return status
