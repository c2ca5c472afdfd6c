"""One tritonserver process: its command line, launch, readiness, drain and stop."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from resnet_serve.contract import ENSEMBLE_NAME
from resnet_serve.gpu_placement import memory_pool_args
from resnet_serve.server import access, procfs, shm
from resnet_serve.server.binary import ServerBinary, ServerError, find_server, server_environment
from resnet_serve.server.mps import MpsDaemon, MpsMode, start_daemon

READY_PATH = "/v2/health/ready"
LIVE_PATH = "/v2/health/live"
# How long a start may take to report ready. A GPU repository loads every instance at start (torch,
# cuDNN tuning, CUDA graphs): 32 fused instances on 4 H200s without MPS took most of a 165 s test.
# A start that fails ends sooner (--exit-on-error); only a hung one waits this long.
START_TIMEOUT_S = 600.0
# CUDA memory pool for repositories whose steps pass GPU tensors: a full fp16 batch of 256 is 77 MB;
# too small a pool makes Triton copy them through the host ("failed to copy data" in its log).
GPU_TENSOR_POOL_BYTES = 1 << 30


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
    metrics_port: int = 8002
    log_verbose: int = 0
    cuda_memory_pool_bytes: int = 0  # >0: room for GPU tensors passed between steps (else host copies)
    gpus: Sequence[int] = ()  # the GPUs the repository computes on (its marker's): each gets the pool
    mps: MpsMode = "auto"  # a private MPS daemon for a GPU repository where one can run (mps.py)
    model_control_key: str | None = None  # "HEADER=VALUE": load/unload allowed to requests carrying it
    extra_args: Sequence[str] = ()
    public_http: bool = False  # HTTP on `host` too; else on 127.0.0.1 (access.py says why)
    # The key for the admin APIs (access.ADMIN_APIS): the user's, else a random one only this process knows.
    admin_key: str = field(default="", repr=False)

    def __post_init__(self) -> None:
        self.admin_key = self.admin_key or self.model_control_key or access.private_key()

    @property
    def http_host(self) -> str:
        return access.http_host(self.host, self.public_http)

    @property
    def metrics_host(self) -> str:
        """Loopback unless ``host`` is: the metrics port crashes as HTTP does; serve's front relays it."""
        return access.http_host(self.host, public_http=False)

    @classmethod
    def on_free_ports(cls, repository: Path, host: str = "127.0.0.1", **kwargs) -> ServerSettings:
        ports = {name: free_port(host) for name in ("http_port", "grpc_port", "metrics_port")}
        return cls(repository=repository, host=host, **ports, **kwargs)

    def command(self, binary: ServerBinary) -> list[str]:
        if any(arg.startswith(("--model-control-mode", "--load-model")) for arg in self.extra_args):
            raise ServerError("model control is set by resnet-serve: use --model-control-key HEADER=VALUE")
        if any("restricted" in arg or "shm-region-prefix-name" in arg for arg in self.extra_args):
            raise ServerError(f"resnet-serve sets API restrictions and shm region names, got {list(self.extra_args)}")
        return [
            str(binary.executable),
            f"--model-repository={self.repository}",
            f"--backend-directory={binary.backend_dir}",
            f"--http-address={self.http_host}",
            f"--http-port={self.http_port}",
            f"--grpc-address={self.host}",
            f"--grpc-port={self.grpc_port}",
            f"--metrics-address={self.metrics_host}",
            f"--metrics-port={self.metrics_port}",
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


class TritonServer:
    """One tritonserver process: ``with TritonServer(settings) as server: ...``."""

    def __init__(self, settings: ServerSettings, *, binary: ServerBinary | None = None, log_path: Path | None = None):
        self.settings = settings
        self.binary = binary or find_server()
        self.log_path = log_path or Path(tempfile.mkstemp(prefix="tritonserver-", suffix=".log")[1])
        self.process: subprocess.Popen | None = None
        self.shm_prefix = ""  # this start's Python-backend region names (shm.py)
        self.mps: MpsDaemon | None = None
        self.gpu_sharing = ""  # how the GPUs' instances share them (mps.py), for serve to say

    @property
    def http_url(self) -> str:
        return f"{_connect_host(self.settings.http_host)}:{self.settings.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"{_connect_host(self.settings.host)}:{self.settings.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{_connect_host(self.settings.metrics_host)}:{self.settings.metrics_port}/metrics"

    def start(self, timeout: float = START_TIMEOUT_S, cancel: threading.Event | None = None) -> TritonServer:
        """Launch the server and block until it reports ready (or raise with its log, or once
        ``cancel`` is set: serve stopping while supervise restarts the server)."""
        self.binary.install_python_stub()
        self.shm_prefix = shm.new_prefix()
        command = [*self.settings.command(self.binary), shm.backend_config_arg(self.shm_prefix)]
        env = server_environment(self.binary)
        self.mps, self.gpu_sharing = start_daemon(self.settings.mps, self.settings.gpus, env)
        try:
            with open(self.log_path, "ab") as log:
                self.process = subprocess.Popen(
                    command,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env=self.mps.client_environment(env) if self.mps else env,
                    start_new_session=True,  # its own process group: stubs stop with it
                )
            self.wait_ready(timeout, cancel)
        except BaseException:
            self.stop()
            raise
        return self

    def is_ready(self, model: str | None = None) -> bool:
        """The server (or one model) answers ready."""
        path = f"/v2/models/{urllib.parse.quote(model)}/ready" if model else READY_PATH
        try:
            with urllib.request.urlopen(f"http://{self.http_url}{path}", timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def is_serving(self) -> bool:
        """The server AND every model clients call answer ready (Triton's own readiness stays 200
        after an ensemble is unloaded): what a client, or a probe, needs."""
        return self.is_ready() and all(self.is_ready(model) for model in self.settings.models)

    def wait_ready(self, timeout: float, cancel: threading.Event | None = None) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if cancel is not None and cancel.is_set():
                raise ServerError("stopped while starting")
            if self.process is not None and self.process.poll() is not None:
                raise ServerError(f"tritonserver exited with code {self.process.returncode}\n{self.log_tail()}")
            if self.is_serving():
                return
            time.sleep(0.2)
        raise ServerError(f"tritonserver was not ready after {timeout:.0f} s\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return f"--- last lines of {self.log_path} ---\n" + "\n".join(text[-lines:])

    def stop(self, timeout: float = 30.0) -> int | None:
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
            with urllib.request.urlopen(self.metrics_url, timeout=2) as response:
                text = response.read().decode()
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

    def _admin_post(self, path: str, timeout: float) -> None:
        """POST an admin (restricted) API over HTTP with the admin key; raises ServerError."""
        header, value = access.parse_key(self.settings.admin_key)
        request = urllib.request.Request(f"http://{self.http_url}{path}", b"{}", {header: value})
        try:
            with urllib.request.urlopen(request, timeout=timeout):
                pass
        except urllib.error.HTTPError as exc:
            raise ServerError(f"POST {path}: HTTP {exc.code} {exc.read()[:300].decode(errors='replace')}") from None
        except OSError as exc:
            raise ServerError(f"POST {path}: {exc}") from None

    def reload_model(self, model: str, timeout: float = 120.0) -> None:
        """Unload ``model`` and load it again, with a new stub; the rest of the server keeps running.

        Triton (2.51) unloads the models that depend on it (its ensemble) with it and loads them back
        with it; an ensemble is loaded here only if it did not come back (loading it when it is
        loaded reloads its composing models too: measured 20 s instead of 2). Raises ServerError.
        """
        were_ready = [entry for entry in self.settings.models if entry != model and self.is_ready(entry)]
        name = urllib.parse.quote(model)
        self._admin_post(f"/v2/repository/models/{name}/unload", timeout)
        self._admin_post(f"/v2/repository/models/{name}/load", timeout)
        for entry in were_ready:
            if not self.is_ready(entry):
                self._admin_post(f"/v2/repository/models/{urllib.parse.quote(entry)}/load", timeout)
        if not self.is_ready(model) or not all(self.is_ready(entry) for entry in were_ready):
            raise ServerError(f"{model} was loaded again but is not ready")

    def restart(self, timeout: float = START_TIMEOUT_S, cancel: threading.Event | None = None) -> None:
        """Stop without draining (a dead stub never finishes its requests), then start again."""
        self.stop(timeout=5.0)
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
