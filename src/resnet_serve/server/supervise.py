"""Keeping a tritonserver serving: restart it when it exits or one of its Python stubs dies.

Triton keeps a model "ready" after its Python stub dies and fails every later request with "Stub
process ... is not healthy", so ``serve`` watches the stubs (:class:`StubWatch`) and restarts.
"""

from __future__ import annotations

import time
from pathlib import Path

from tritonclient.grpc import model_config_pb2 as mc

from resnet_serve.gpu_placement import visible_gpu_count
from resnet_serve.repository import read_config
from resnet_serve.server import procfs
from resnet_serve.server.process import TritonServer


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
            self.models.setdefault(pid, procfs.stub_model(pid))

    def problem(self) -> str | None:
        """Why the server must be restarted, or None."""
        process = self.server.process
        if process is not None and process.poll() is not None:
            return f"tritonserver exited by itself (code {process.returncode})"
        for pid, model in [(pid, model) for pid, model in self.models.items() if not procfs.alive(pid)]:
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
