"""One tritonserver process and its HTTP front: command line, launch, readiness, drain and stop."""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from tritonclient.grpc import service_pb2, service_pb2_grpc

from resnet_serve.contract import ENSEMBLE_NAME
from resnet_serve.gpu_placement import memory_pool_args
from resnet_serve.server import access, procfs, shm, with_parent
from resnet_serve.server.binary import ServerBinary, ServerError, find_server, server_environment
from resnet_serve.server.mps import MAX_SOCKET_PATH, MpsDaemon, MpsMode, start_daemon

READY_PATH = "/v2/health/ready"
LIVE_PATH = "/v2/health/live"
# How long a start may take to report ready. A GPU repository loads every instance at start (torch,
# cuDNN tuning, CUDA graphs): 32 fused instances on 4 H200s without MPS took most of a 165 s test.
# A start that fails ends sooner (--exit-on-error); only a hung one waits this long.
START_TIMEOUT_S = 600.0
PRIVATE_DIR_PREFIX = "resnet-serve-triton-"  # a server's own directory: procfs.owned_directory


class _UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP over a Unix socket (Triton's metrics listen on one)."""

    def __init__(self, path: str, timeout: float):
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.socket_path)


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def check_port_free(what: str, host: str, port: int) -> None:
    """Raise ServerError when ``port`` on ``host`` is taken (gRPC servers share ports by default, so
    a second tritonserver would start beside the first and serve would then talk to the wrong one)."""
    with socket.socket(_family(host), socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers bind: TIME_WAIT is no conflict
        try:
            sock.bind((host.strip("[]"), port))
        except OSError as exc:
            raise port_taken(what, host, port, exc) from None


def port_taken(what: str, host: str, port: int, exc: OSError) -> ServerError:
    """The one-line error of a port that cannot be bound, naming it."""
    return ServerError(
        f"{what} port {port} on {host} is in use ({exc.strerror}): stop what holds it, or choose another port"
    )


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now on ``host``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


@dataclass(kw_only=True)
class ServerSettings:
    """Addresses and options for one tritonserver process."""

    repository: Path
    models: Sequence[str] = (ENSEMBLE_NAME,)  # the models clients call: serving means all of them are ready
    host: str = "127.0.0.1"
    http_port: int = 8000
    grpc_port: int = 8001
    log_verbose: int = 0
    cuda_memory_pool_bytes: int = 0  # >0: room for GPU tensors passed between steps (else host copies)
    gpus: Sequence[int] = ()  # the GPUs the repository computes on (its marker's): each gets the pool
    mps: MpsMode = "auto"  # a private MPS daemon for a GPU repository where one can run (mps.py)
    model_control_key: str | None = None  # "HEADER=VALUE": load/unload allowed to requests carrying it
    extra_args: Sequence[str] = ()
    public_http: bool = False  # serve's HTTP front on `host` too; else on 127.0.0.1
    # The key for the admin APIs (access.ADMIN_APIS): the user's, else a random one only this process knows.
    admin_key: str = field(default="", repr=False)

    def __post_init__(self) -> None:
        self.admin_key = self.admin_key or self.model_control_key or access.private_key()

    @property
    def http_host(self) -> str:
        return access.http_host(self.host, self.public_http)

    @classmethod
    def on_free_ports(cls, repository: Path, host: str = "127.0.0.1", **kwargs) -> ServerSettings:
        ports = {name: free_port(host) for name in ("http_port", "grpc_port")}
        return cls(repository=repository, host=host, **ports, **kwargs)

    def command(self, binary: ServerBinary, metrics_socket: Path) -> list[str]:
        check_secured_args(self.extra_args)
        return [
            str(binary.executable),
            f"--model-repository={self.repository}",
            f"--backend-directory={binary.backend_dir}",
            "--allow-http=false",  # its HTTP crashes on single requests (access.py): http_front.py answers HTTP
            f"--grpc-address={self.host}",
            f"--grpc-port={self.grpc_port}",
            "--reuse-grpc-port=false",
            # Triton's metrics on a Unix socket in a directory of serve's user alone (no TCP port): its
            # HTTP server crashes there as on its HTTP port (access.py); serve's status front relays it.
            f"--metrics-address=unix:{metrics_socket}",
            "--metrics-port=0",
            *self._model_control_args(),
            "--strict-readiness=true",
            "--exit-on-error=true",
            f"--log-verbose={self.log_verbose}",
            *memory_pool_args(self.gpus or (0,), self.cuda_memory_pool_bytes),
            *self.extra_args,
        ]

    def _model_control_args(self) -> list[str]:
        """Triton's explicit mode (all models loaded at start), its admin APIs behind the admin key.

        Explicit mode always: with a private key nobody else can load or unload, and supervise can
        reload just the model whose stub died instead of restarting the server.
        """
        try:
            restricted = access.restricted_api_args(self.admin_key)
        except access.AccessError as exc:
            raise ServerError(str(exc)) from None
        return ["--model-control-mode=explicit", "--load-model=*", *restricted]


# tritonserver arguments serve sets from its own options (a second value waited on the wrong port).
OWN_ARGUMENTS = ("--grpc-port", "--grpc-address", "--http-port", "--http-address", "--allow-http", "--metrics-port",
                 "--metrics-address", "--model-repository", "--model-store", "--backend-directory")  # fmt: skip


def check_secured_args(extra_args: Sequence[str]) -> None:
    """Refuse tritonserver arguments that would undo what keeps the server safe (its key, its regions)."""
    if any(arg.startswith(("--model-control-mode", "--load-model")) for arg in extra_args):
        raise ServerError("model control is set by resnet-serve: use --model-control-key HEADER=VALUE")
    if any("restricted" in arg or "shm-region-prefix-name" in arg for arg in extra_args):
        raise ServerError(f"resnet-serve sets API restrictions and shm region names, got {list(extra_args)}")


def check_triton_args(extra_args: Sequence[str]) -> None:
    """serve's: also refuse the arguments it sets from its own options, and words that are no arguments."""
    check_secured_args(extra_args)
    if owned := [arg for arg in extra_args if arg.split("=", 1)[0] in OWN_ARGUMENTS]:
        raise ServerError(f"resnet-serve sets {owned[0].split('=', 1)[0]} itself: use serve's own options "
                          "(--grpc-port, --http-port, --metrics-port, --host, --repository)")  # fmt: skip
    if stray := [arg for arg in extra_args if not arg.startswith("-")]:
        raise ServerError(f"unexpected argument {stray[0]!r}: tritonserver's own arguments go after --, "
                          "e.g. -- --grpc-use-ssl=true")  # fmt: skip


_MODEL_ROW = re.compile(r"^\| (?P<model>\S+)\s+\| (?P<version>\d+)\s+\| UNAVAILABLE: (?P<why>.*?)\s*\|$")


def load_failures(log: str) -> list[str]:
    """``model M did not load: WHY`` for each UNAVAILABLE row of the model table Triton logs at start."""
    rows = filter(None, map(_MODEL_ROW.match, log.splitlines()))
    return [f"model {row['model']} did not load: {row['why']}" for row in rows]


class TritonServer:
    """One tritonserver process and serve's HTTP front for it: ``with TritonServer(settings) as server: ...``.

    Both are started from the calling thread and stop when it ends (``with_parent.py``): start,
    restart and stop from a thread that lives as long as the server is wanted (the main one).
    """

    def __init__(self, settings: ServerSettings, *, binary: ServerBinary | None = None, log_path: Path | None = None):
        self.settings = settings
        self.binary = binary or find_server()
        self.log_path = log_path or Path(tempfile.mkstemp(prefix="tritonserver-", suffix=".log")[1])
        self.process: subprocess.Popen | None = None
        self.front: subprocess.Popen | None = None  # http_front.py, kept across restarts of tritonserver
        self._channel: grpc.Channel | None = None
        self.shm_prefix = ""  # this start's Python-backend region names (shm.py)
        self._log_start = 0  # where this start's lines begin in the log (it is appended to)
        self.private_dir: Path | None = None  # this server's own directory (mode 0700): the metrics socket
        self.mps: MpsDaemon | None = None
        self.gpu_sharing = ""  # how the GPUs' instances share them (mps.py), for serve to say

    @property
    def http_url(self) -> str:
        return f"{_connect_host(self.settings.http_host)}:{self.settings.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"{_connect_host(self.settings.host)}:{self.settings.grpc_port}"

    @property
    def metrics_socket(self) -> Path | None:
        """Where Triton's metrics answer HTTP once started: a Unix socket that only serve's user may reach."""
        return self.private_dir / "metrics.sock" if self.private_dir else None

    def metrics(self, timeout: float = 5.0) -> bytes:
        """Triton's Prometheus text; raises OSError when it does not answer."""
        path = self.metrics_socket  # once: stop() may clear it meanwhile
        if path is None:
            raise OSError("tritonserver is not started")
        connection = _UnixHTTPConnection(str(path), timeout)
        try:
            connection.request("GET", "/metrics")
            response = connection.getresponse()
            if response.status != 200:
                raise OSError(f"tritonserver's metrics answered {response.status}")
            return response.read()
        except http.client.HTTPException as exc:
            raise OSError(f"tritonserver's metrics: {exc!r}") from None
        finally:
            connection.close()

    def start(self, timeout: float = START_TIMEOUT_S, cancel: threading.Event | None = None) -> TritonServer:
        """Launch the server and block until it reports ready (or raise with its log, or once
        ``cancel`` is set: serve stopping while supervise restarts the server)."""
        self.binary.install_python_stub()
        self._check_ports()
        shm.remove_orphans()
        for orphaned in procfs.orphaned_directories(PRIVATE_DIR_PREFIX):
            shutil.rmtree(orphaned, ignore_errors=True)
        self.shm_prefix = shm.new_prefix()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)  # serve's default, build/, from any folder
        self._log_start = self.log_path.stat().st_size if self.log_path.exists() else 0  # this start's lines
        try:
            command = with_parent.command(os.getpid(), self._arguments())
            env = server_environment(self.binary)
            self.mps, self.gpu_sharing = start_daemon(self.settings.mps, self.settings.gpus, env)
            with open(self.log_path, "ab") as log:
                self.process = subprocess.Popen(
                    command,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env=self.mps.client_environment(env) if self.mps else env,
                    start_new_session=True,  # its own process group: stubs stop with it
                )
            self.start_front()
            self.wait_ready(timeout, cancel)
        except BaseException:
            self.stop()
            raise
        return self

    def _arguments(self) -> list[str]:
        """tritonserver's arguments for this start, its metrics socket made ready in the private directory."""
        if self.private_dir is None:  # kept across restarts; stop() removes it
            self.private_dir = procfs.owned_directory(PRIVATE_DIR_PREFIX)
        socket_path = self.metrics_socket
        if len(str(socket_path)) > MAX_SOCKET_PATH:
            raise ServerError(f"the metrics socket's path {socket_path} is too long: set a shorter TMPDIR")
        socket_path.unlink(missing_ok=True)  # a restart: Triton refuses a socket file that exists
        return [*self.settings.command(self.binary, socket_path), shm.backend_config_arg(self.shm_prefix)]

    def _check_ports(self) -> None:
        settings = self.settings
        check_port_free("gRPC", settings.host, settings.grpc_port)
        if not self.front_alive():
            check_port_free("HTTP", settings.http_host, settings.http_port)

    def start_front(self) -> None:
        """Start serve's HTTP front (http_front.py) unless it runs: it answers 503 while tritonserver restarts."""
        if self.front_alive():
            return
        front = [sys.executable, "-m", "resnet_serve.server.http_front", "--host", self.settings.http_host,
                 "--port", str(self.settings.http_port), "--grpc", self.grpc_url,
                 "--models", ",".join(self.settings.models)]  # fmt: skip
        with open(self.log_path, "ab") as log:
            self.front = subprocess.Popen(
                with_parent.command(os.getpid(), front), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )

    def front_alive(self) -> bool:
        return self.front is not None and self.front.poll() is None

    def _front_listening(self) -> bool:
        host, port = _connect_host(self.settings.http_host).strip("[]"), self.settings.http_port
        try:
            with socket.create_connection((host, port), timeout=1):
                return True
        except OSError:
            return False

    @property
    def _stub(self) -> service_pb2_grpc.GRPCInferenceServiceStub:
        if self._channel is None:
            self._channel = grpc.insecure_channel(self.grpc_url)
        return service_pb2_grpc.GRPCInferenceServiceStub(self._channel)

    def is_ready(self, model: str | None = None) -> bool:
        """The server (or one model) answers ready, asked over gRPC."""
        try:
            if model is None:
                return self._stub.ServerReady(service_pb2.ServerReadyRequest(), timeout=2).ready
            return self._stub.ModelReady(service_pb2.ModelReadyRequest(name=model), timeout=2).ready
        except grpc.RpcError:
            return False

    def is_serving(self) -> bool:
        """The server AND every model clients call answer ready (Triton's own readiness stays true
        after an ensemble is unloaded), and the HTTP front runs: what a client, or a probe, needs."""
        return self.is_ready() and all(self.is_ready(model) for model in self.settings.models) and self.front_alive()

    def wait_ready(self, timeout: float, cancel: threading.Event | None = None) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if cancel is not None and cancel.is_set():
                raise ServerError("stopped while starting")
            if self.process is not None and self.process.poll() is not None:
                raise ServerError(f"tritonserver exited with code {self.process.returncode}\n{self.log_tail()}")
            if self.front is not None and self.front.poll() is not None:
                raise ServerError(f"the HTTP front exited with code {self.front.returncode}\n{self.log_tail()}")
            if self.is_serving() and self._front_listening():
                return
            time.sleep(0.2)
        raise ServerError(f"tritonserver was not ready after {timeout:.0f} s\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        """What this start wrote to the log: the models that did not load and why, where Triton's table
        says so (the cause was one row of 40 lines of tables), else its last ``lines`` lines."""
        try:
            with open(self.log_path, "rb") as log:
                log.seek(self._log_start)
                text = log.read().decode(errors="replace")
        except OSError:
            return ""
        if failures := load_failures(text):
            return "\n".join(failures) + f"\n(tritonserver's log: {self.log_path})"
        return f"--- last lines of {self.log_path} ---\n" + "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 30.0) -> int | None:
        """Stop tritonserver (``stop_server``), then the HTTP front."""
        try:
            return self.stop_server(timeout)
        finally:
            if self.front is not None:
                self.front.terminate()
                try:
                    self.front.wait(5)
                except subprocess.TimeoutExpired:
                    self.front.kill()
                    self.front.wait()
            if self._channel is not None:
                self._channel.close()
                self._channel = None
            if self.private_dir is not None:
                shutil.rmtree(self.private_dir, ignore_errors=True)
                self.private_dir = None

    def stop_server(self, timeout: float = 30.0) -> int | None:
        """SIGTERM tritonserver alone: it drains in-flight requests and stops its Python stubs itself.

        After ``timeout`` seconds, or once it has exited, SIGKILL its process group so that no stub
        outlives it, then remove the shared-memory regions of this start that are left (a crashed
        server or a killed stub leaves them), and stop its MPS daemon.
        """
        try:
            if self.process is None:
                return None
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
                try:
                    self.process.wait(timeout)
                except subprocess.TimeoutExpired:
                    _signal_group(self.process.pid, signal.SIGKILL)
                    self.process.wait()
            _signal_group(self.process.pid, signal.SIGKILL)  # any stub left behind
            shm.remove_regions(self.shm_prefix)
            return self.process.returncode
        finally:
            if self.mps is not None:  # after its clients: the daemon's server ends with them
                self.mps.stop()
                self.mps = None

    def _activity(self) -> tuple[float, float] | None:
        """(queued requests, completed requests) summed over all models, from the metrics endpoint."""
        try:
            text = self.metrics(timeout=2).decode()
        except OSError:
            return None
        totals = {"nv_inference_pending_request_count": 0.0, "nv_inference_request_success": 0.0,
                  "nv_inference_request_failure": 0.0}  # fmt: skip
        for line in text.splitlines():
            name = line.split("{", 1)[0]
            if name in totals:
                totals[name] += float(line.rsplit(" ", 1)[1])
        pending, success, failure = totals.values()
        return pending, success + failure

    def wait_idle(self, timeout: float = 30.0, quiet_s: float = 1.0) -> bool:
        """Wait until nothing is queued and no request has completed for ``quiet_s`` seconds.

        Triton's own SIGTERM drain fails ensemble requests that are between two steps ("scheduler
        for model has stopped accepting new inference requests"), so the drain happens here first.
        """
        deadline = time.monotonic() + timeout
        last, quiet_since = None, time.monotonic()
        while time.monotonic() < deadline:
            activity = self._activity()
            if activity is None:
                return False
            if activity[0] > 0 or activity != last:
                last, quiet_since = activity, time.monotonic()
            elif time.monotonic() - quiet_since >= quiet_s:
                return True
            time.sleep(0.1)
        return False

    def stub_pids(self) -> list[int]:
        """The live Python-backend stub processes of this server."""
        if self.process is None:
            return []
        return [pid for pid in procfs.children(self.process.pid) if procfs.is_stub(pid) and procfs.alive(pid)]

    def _model_control(self, action: str, model: str, timeout: float) -> None:
        """Load or unload ``model`` over gRPC with the admin key; raises ServerError."""
        header, value = access.parse_key(self.settings.admin_key)
        metadata = [(access.GRPC_HEADER_PREFIX + header, value)]
        try:
            if action == "load":
                request = service_pb2.RepositoryModelLoadRequest(model_name=model)
                self._stub.RepositoryModelLoad(request, metadata=metadata, timeout=timeout)
            else:
                request = service_pb2.RepositoryModelUnloadRequest(model_name=model)
                self._stub.RepositoryModelUnload(request, metadata=metadata, timeout=timeout)
        except grpc.RpcError as exc:
            raise ServerError(f"{action} {model}: {exc.code().name} {exc.details()}") from None

    def reload_model(self, model: str, timeout: float = 120.0) -> None:
        """Unload ``model`` and load it again, with a new stub; the rest of the server keeps running.

        Triton (2.51) unloads the models that depend on it (its ensemble) with it and loads them back
        with it; an ensemble is loaded here only if it did not come back (loading it when it is
        loaded reloads its composing models too: measured 20 s instead of 2). Raises ServerError.
        """
        were_ready = [entry for entry in self.settings.models if entry != model and self.is_ready(entry)]
        self._model_control("unload", model, timeout)
        self._model_control("load", model, timeout)
        for entry in were_ready:
            if not self.is_ready(entry):
                self._model_control("load", entry, timeout)
        if not self.is_ready(model) or not all(self.is_ready(entry) for entry in were_ready):
            raise ServerError(f"{model} was loaded again but is not ready")

    def restart(self, timeout: float = START_TIMEOUT_S, cancel: threading.Event | None = None) -> None:
        """Stop without draining (a dead stub never finishes its requests), then start again; the
        HTTP front keeps its port and answers 503 meanwhile."""
        self.stop_server(timeout=5.0)
        self.process = None
        self.start(timeout, cancel)

    def __enter__(self) -> TritonServer:
        return self.start() if self.process is None else self

    def __exit__(self, *exc_info) -> None:
        self.stop()


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _connect_host(host: str) -> str:
    """Where a client connects for a server bound to ``host``."""
    return (
        "127.0.0.1" if host in ("0.0.0.0", "") else (f"[{host}]" if ":" in host and not host.startswith("[") else host)
    )
