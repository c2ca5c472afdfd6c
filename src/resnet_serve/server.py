"""Find or launch ``tritonserver``, wait until it is ready, stop it cleanly.

Where the server comes from, in order: ``--server PATH``, ``tritonserver`` on PATH, or the binary
bundled in the ``nvidia-pytriton`` wheel (installed with ``--no-deps``; only its server is used).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from resnet_serve.errors import ResnetServeError
from resnet_serve.repository import mc, read_config, stale_model_files

READY_PATH = "/v2/health/ready"
LIVE_PATH = "/v2/health/live"
# CUDA memory pool for repositories whose steps pass GPU tensors: a full fp16 batch of 256 is 77 MB;
# too small a pool makes Triton copy them through the host ("failed to copy data" in its log).
GPU_TENSOR_POOL_BYTES = 1 << 30


class ServerError(ResnetServeError):
    """The server could not be found, started or made ready."""


@dataclass(frozen=True)
class ServerBinary:
    """A tritonserver executable, its backends and the environment it needs."""

    executable: Path
    backend_dir: Path
    env: dict[str, str] = field(default_factory=dict)


def _bundled_server() -> ServerBinary | None:
    """The tritonserver inside the nvidia-pytriton wheel, made ready for this Python."""
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        return None
    package = Path(next(iter(spec.submodule_search_locations)))
    root = package / "tritonserver"
    executable = root / "bin" / "tritonserver"
    if not executable.is_file():
        return None
    backend_dir = root / "backends"
    _install_python_stub(root)
    libs = package.parent / "nvidia_pytriton.libs"
    return ServerBinary(executable, backend_dir, {"LD_LIBRARY_PATH": str(libs)})


def _install_python_stub(root: Path) -> None:
    """Copy the Python-backend stub built for this interpreter's version next to the backend."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    source = root / "python_backend_stubs" / version / "triton_python_backend_stub"
    target = root / "backends" / "python" / "triton_python_backend_stub"
    if not source.is_file():
        raise ServerError(f"the bundled tritonserver has no Python-backend stub for Python {version}")
    for binary in (root / "bin" / "tritonserver", source):
        if not os.access(binary, os.X_OK):
            binary.chmod(binary.stat().st_mode | 0o111)
    if not target.is_file() or target.stat().st_size != source.stat().st_size:
        shutil.copy2(source, target)


def find_server(server: str | Path | None = None, backend_dir: str | Path | None = None) -> ServerBinary:
    """Locate tritonserver: an explicit path, $TRITON_SERVER, PATH, then the nvidia-pytriton wheel."""
    server = server or os.environ.get("TRITON_SERVER")
    backend_dir = backend_dir or os.environ.get("TRITON_BACKENDS")
    if server:
        executable = Path(server)
        if not (executable.is_file() and os.access(executable, os.X_OK)):
            raise ServerError(f"--server {server} is not an executable file")
    elif found := shutil.which("tritonserver"):
        executable = Path(found)
    else:
        bundled = _bundled_server()
        if bundled is None:
            raise ServerError(
                "no tritonserver found: pass --server PATH, put tritonserver on PATH, or "
                "`pip install --no-deps nvidia-pytriton` (see the README)"
            )
        return bundled if backend_dir is None else ServerBinary(bundled.executable, Path(backend_dir), bundled.env)
    default_backends = executable.resolve().parent.parent / "backends"
    return ServerBinary(executable, Path(backend_dir) if backend_dir else default_backends)


def server_environment(binary: ServerBinary) -> dict[str, str]:
    """The environment for the server: its libraries, and this Python first on PATH.

    The Python-backend stub imports packages from the first ``python`` on PATH, so the active
    virtual environment (with numpy < 2, Pillow, onnxruntime and resnet_serve) must come first.
    """
    env = dict(os.environ)
    library_dirs = [
        binary.env.get("LD_LIBRARY_PATH", ""),
        sysconfig.get_config_var("LIBDIR") or "",
        env.get("LD_LIBRARY_PATH", ""),
    ]
    env["LD_LIBRARY_PATH"] = os.pathsep.join(d for d in library_dirs if d)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now on ``host``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


@dataclass
class ServerSettings:
    """Addresses and options for one tritonserver process."""

    repository: Path
    host: str = "127.0.0.1"
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002
    log_verbose: int = 0
    cuda_memory_pool_bytes: int = 0  # >0: room for GPU tensors passed between steps (else host copies)
    model_control_key: str | None = None  # "HEADER=VALUE": load/unload allowed to requests carrying it
    extra_args: Sequence[str] = ()

    @classmethod
    def on_free_ports(cls, repository: Path, host: str = "127.0.0.1", **kwargs) -> ServerSettings:
        return cls(repository, host, free_port(host), free_port(host), free_port(host), **kwargs)

    def command(self, binary: ServerBinary) -> list[str]:
        if any(arg.startswith(("--model-control-mode", "--load-model")) for arg in self.extra_args):
            raise ServerError("model control is set by resnet-serve: use --model-control-key HEADER=VALUE")
        return [
            str(binary.executable),
            f"--model-repository={self.repository}",
            f"--backend-directory={binary.backend_dir}",
            f"--http-address={self.host}",
            f"--http-port={self.http_port}",
            f"--grpc-address={self.host}",
            f"--grpc-port={self.grpc_port}",
            f"--metrics-address={self.host}",
            f"--metrics-port={self.metrics_port}",
            *self._model_control_args(),
            "--strict-readiness=true",
            "--exit-on-error=true",
            f"--log-verbose={self.log_verbose}",
            *([f"--cuda-memory-pool-byte-size=0:{self.cuda_memory_pool_bytes}"] if self.cuda_memory_pool_bytes else []),
            *self.extra_args,
        ]

    def _model_control_args(self) -> list[str]:
        """Off by default; with a key, Triton's explicit mode behind its restricted-API header check."""
        if self.model_control_key is None:
            return ["--model-control-mode=none"]
        header, _, value = self.model_control_key.partition("=")
        if not (header and value) or any(c in header for c in ",:= "):
            raise ServerError(f"--model-control-key needs HEADER=VALUE, got {self.model_control_key!r}")
        restriction = f"model-repository:{header.lower()}={value}"
        return [
            "--model-control-mode=explicit",
            "--load-model=*",
            f"--http-restricted-api={restriction}",
            f"--grpc-restricted-protocol={restriction}",
        ]


class TritonServer:
    """One tritonserver process: ``with TritonServer(settings) as server: ...``."""

    def __init__(self, settings: ServerSettings, binary: ServerBinary | None = None, log_path: Path | None = None):
        self.settings = settings
        self.binary = binary or find_server()
        self.log_path = log_path or Path(tempfile.mkstemp(prefix="tritonserver-", suffix=".log")[1])
        self.process: subprocess.Popen | None = None

    @property
    def http_url(self) -> str:
        return f"{_connect_host(self.settings.host)}:{self.settings.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"{_connect_host(self.settings.host)}:{self.settings.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{_connect_host(self.settings.host)}:{self.settings.metrics_port}/metrics"

    def start(self, timeout: float = 180.0) -> TritonServer:
        """Launch the server and block until it reports ready (or raise with its log)."""
        if stale := stale_model_files(self.settings.repository):
            raise ServerError(
                f"{self.settings.repository} was written by another version of resnet-serve ({stale[0]} differs "
                f"from this one's); write it again with `resnet-serve repo -o {self.settings.repository}`"
            )
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.settings.command(self.binary),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=server_environment(self.binary),
                start_new_session=True,  # its own process group: stubs stop with it
            )
        try:
            self.wait_ready(timeout)
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

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise ServerError(f"tritonserver exited with code {self.process.returncode}\n{self.log_tail()}")
            if self.is_ready():
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
        outlives it.
        """
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
        return self.process.returncode

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
        return [pid for pid in _children(self.process.pid) if _is_stub(pid) and _alive(pid)]

    def restart(self, timeout: float = 180.0) -> None:
        """Stop without draining (a dead stub never finishes its requests), then start again."""
        self.stop(timeout=5.0)
        self.process = None
        self.start(timeout)

    def __enter__(self) -> TritonServer:
        return self.start() if self.process is None else self

    def __exit__(self, *exc_info) -> None:
        self.stop()


def _children(pid: int) -> list[int]:
    try:
        return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _is_stub(pid: int) -> bool:
    try:
        return b"triton_python_backend_stub" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _alive(pid: int) -> bool:
    """Running (not exited, not a zombie waiting to be reaped)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def visible_gpu_count(env: dict[str, str] | None = None) -> int:
    """GPUs a CUDA process would see: $CUDA_VISIBLE_DEVICES, else the NVIDIA driver's list (Linux)."""
    visible = (env if env is not None else os.environ).get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([device for device in visible.split(",") if device.strip() and device.strip() != "-1"])
    gpus = Path("/proc/driver/nvidia/gpus")
    return len(list(gpus.iterdir())) if gpus.is_dir() else 0


def expected_stub_count(repository: Path, gpu_count: int | None = None) -> int:
    """Python stubs a repository's configs ask for: one per instance of each Python-backend model
    (a KIND_GPU group has ``count`` instances on each of its GPUs)."""
    gpus = visible_gpu_count() if gpu_count is None else gpu_count
    stubs = 0
    for path in sorted(Path(repository).glob("*/config.pbtxt")):
        config = read_config(path)
        if config.backend != "python":
            continue
        groups = config.instance_group or [mc.ModelInstanceGroup(kind=mc.ModelInstanceGroup.KIND_AUTO, count=1)]
        for group in groups:
            on_gpu = group.kind == mc.ModelInstanceGroup.KIND_GPU or (
                group.kind == mc.ModelInstanceGroup.KIND_AUTO and gpus > 0
            )
            stubs += max(group.count, 1) * ((len(group.gpus) or gpus) if on_gpu else 1)
    return stubs


class StubWatch:
    """The Python stubs of a running server and the models they serve: says when one crashed.

    Triton keeps a model "ready" after its Python stub dies and fails every later request with
    "Stub process ... is not healthy", so a dead stub is a crash, and so is a stub missing from the
    start (fewer running than the configs ask for). With model control on, a stub also exits when
    its model is unloaded: then a dead stub is a crash only while Triton still calls its model
    ready, and the count is not checked.
    """

    def __init__(self, server: TritonServer):
        self.server = server
        self.unloads_allowed = server.settings.model_control_key is not None
        self.expected = expected_stub_count(server.settings.repository)
        self.models: dict[int, str] = {}  # stub pid -> model name, recorded while the stub lives
        self._add_new_stubs()

    def _add_new_stubs(self) -> None:
        for pid in self.server.stub_pids():
            self.models.setdefault(pid, _stub_model(pid))

    def problem(self) -> str | None:
        """Why the server must be restarted, or None."""
        process = self.server.process
        if process is not None and process.poll() is not None:
            return f"tritonserver exited by itself (code {process.returncode})"
        for pid, model in [(pid, model) for pid, model in self.models.items() if not _alive(pid)]:
            if not self.unloads_allowed or self.server.is_ready(model):
                return f"Python stub process {pid} ({model}) died"
            del self.models[pid]  # its model was unloaded through the model-control API
        if not self.unloads_allowed and len(self.models) < self.expected:
            return f"{len(self.models)} Python stub processes running, the repository's configs ask for {self.expected}"
        self._add_new_stubs()  # models loaded through the model-control API
        return None


def supervise(server: TritonServer, stop, log, max_restarts: int = 5, window_s: float = 600.0) -> int:
    """Keep ``server`` serving until ``stop`` (a threading.Event) is set; returns an exit status.

    When a Python stub crashes (see :class:`StubWatch`) or the server exits by itself, the server
    is restarted (requests in flight then get errors, never hangs). More than ``max_restarts``
    restarts within ``window_s`` seconds gives up with status 1.
    """
    restarts: list[float] = []
    watch = StubWatch(server)
    while not stop.wait(1.0):
        reason = watch.problem()
        if reason is None:
            continue
        now = time.monotonic()
        restarts = [t for t in restarts if now - t < window_s] + [now]
        if len(restarts) > max_restarts:
            log(f"{reason}; {max_restarts} restarts in {window_s:.0f} s already, giving up\n{server.log_tail()}")
            return 1
        log(f"{reason}; restarting tritonserver ({len(restarts)}/{max_restarts})")
        server.restart()
        watch = StubWatch(server)
        log(f"tritonserver restarted and ready ({len(watch.models)} Python stubs)")
    return 0


def _stub_model(pid: int) -> str:
    """The model a stub serves, from its model.py path (``<repository>/<model>/<version>/model.py``)."""
    try:
        return Path(Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[1].decode()).parent.parent.name
    except (OSError, IndexError, UnicodeDecodeError):
        return "unknown model"


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _connect_host(host: str) -> str:
    """Where a client connects for a server bound to ``host``."""
    return (
        "127.0.0.1" if host in ("0.0.0.0", "") else (f"[{host}]" if ":" in host and not host.startswith("[") else host)
    )
