"""Keeping a tritonserver serving: reload a model whose Python stub died, restart the server when
it exits (or the reload fails), with backoff, for ever.

Triton keeps a model "ready" after its Python stub dies and fails every later request with "Stub
process ... is not healthy", so ``serve`` watches the stubs (:class:`StubWatch`) and recovers.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections import Counter
from pathlib import Path

from tritonclient.grpc import model_config_pb2 as mc

from resnet_serve.gpu_placement import visible_gpu_count
from resnet_serve.repository import read_config
from resnet_serve.server import procfs, shm
from resnet_serve.server.backoff import Backoff
from resnet_serve.server.binary import ServerError
from resnet_serve.server.process import TritonServer


def expected_stubs(repository: Path, gpu_count: int | None = None) -> dict[str, int]:
    """Python stubs a repository's configs ask for, per model: one per instance of each Python-backend
    model (a KIND_GPU group has ``count`` instances on each of its GPUs)."""
    gpus = visible_gpu_count() if gpu_count is None else gpu_count
    stubs: dict[str, int] = {}
    for path in sorted(Path(repository).glob("*/config.pbtxt")):
        config = read_config(path)
        if config.backend != "python":
            continue
        groups = config.instance_group or [mc.ModelInstanceGroup(kind=mc.ModelInstanceGroup.KIND_AUTO, count=1)]
        for group in groups:
            on_gpu = group.kind == mc.ModelInstanceGroup.KIND_GPU or (
                group.kind == mc.ModelInstanceGroup.KIND_AUTO and gpus > 0
            )
            count = max(group.count, 1) * ((len(group.gpus) or gpus) if on_gpu else 1)
            stubs[path.parent.name] = stubs.get(path.parent.name, 0) + count
    return stubs


def expected_stub_count(repository: Path, gpu_count: int | None = None) -> int:
    """Python stubs a repository's configs ask for, in all."""
    return sum(expected_stubs(repository, gpu_count).values())


class StubWatch:
    """The Python stubs of a running server and the models they serve: says when one crashed.

    Triton keeps a model "ready" after its Python stub dies and fails every later request with
    "Stub process ... is not healthy". So a model that Triton calls ready while fewer of its stubs
    run than its config asks for has crashed (a stub that died, or one missing from the start).
    Counting live stubs per model, rather than watching pids, keeps two legitimate events from
    looking like crashes: an unload (the model is no longer ready) and a reload, e.g. of the
    composing models when the ensemble is loaded (a new stub replaces the old one).
    """

    def __init__(self, server: TritonServer):
        self.server = server
        self.expected = expected_stubs(server.settings.repository)
        self.models: dict[int, str] = {}  # stub pid -> model name, recorded while the stub lives
        self.dead_model: str | None = None  # the model found crashed by problem()
        self._zombies: set[int] = set()  # stubs that had exited unreaped at the last look
        self._add_new_stubs()

    def _add_new_stubs(self) -> None:
        for pid in self.server.stub_pids():
            self.models.setdefault(pid, procfs.stub_model(pid))

    def problem(self) -> str | None:
        """Why the server must be recovered, or None; ``dead_model`` names the crashed model, if any."""
        self.dead_model = None
        process = self.server.process
        if process is not None and process.poll() is not None:
            return f"tritonserver exited by itself (code {process.returncode})"
        self._add_new_stubs()
        live = Counter(model for pid, model in self.models.items() if procfs.alive(pid))
        for model, expected in self.expected.items():
            if live[model] < expected and self.server.is_ready(model):
                self.dead_model = model
                dead = [pid for pid, name in self.models.items() if name == model and not procfs.alive(pid)]
                if dead:
                    return f"Python stub process {dead[0]} ({model}) died"
                return f"{live[model]} Python stub processes run {model}, its config asks for {expected}"
        # A stub that crashed stays a zombie until its model is unloaded; one that Triton stops is
        # reaped at once. Counting alone misses a crash while an old stub that a reload left running
        # makes up the number (seen: a second crash, 16 s after a reload, went unnoticed and failed
        # half of all requests), so a zombie seen at two looks in a row is a crash whatever the count.
        zombies = {pid for pid in self.models if procfs.zombie(pid)}
        lasting, self._zombies = sorted(zombies & self._zombies), zombies
        for pid in lasting:
            if self.server.is_ready(model := self.models[pid]):
                self.dead_model = model
                return f"Python stub process {pid} ({model}) died"
        self.models = {pid: model for pid, model in self.models.items() if procfs.alive(pid) or pid in zombies}
        return None


def supervise(server: TritonServer, stop, log, backoff: Backoff | None = None) -> int:
    """Keep ``server`` serving until ``stop`` (a threading.Event) is set; returns 0. Never gives up.

    When a Python stub crashes (see :class:`StubWatch`), its model alone is unloaded and loaded
    again (Triton takes the ensemble down and up with it); when that fails, a stub is missing from
    the start, or the server exits by itself, the server is restarted (requests in flight then get
    errors, never hangs). Recoveries that follow each other wait longer and longer (``backoff``),
    so that a crash loop does not spin; ``stop`` (SIGTERM to serve) ends any wait.
    """
    backoff = backoff or Backoff()
    watch = StubWatch(server)
    while not stop.wait(1.0):
        if server.front is not None and not server.front_alive():  # e.g. killed for memory: HTTP is down
            log(f"the HTTP front exited (code {server.front.returncode}); starting it again")
            server.start_front()
        reason = watch.problem()
        if reason is None:
            continue
        delay, model = backoff.next_delay(), watch.dead_model
        action = f"reloading {model}" if model else "restarting tritonserver"
        log(f"{reason}; {action} (recovery {backoff.attempt}" + (f", after waiting {delay:.0f} s)" if delay else ")"))
        if stop.wait(delay):
            break
        if done := _recover(server, model, log, stop):
            _wait_for_old_stubs(server, sum(watch.expected.values()), stop)
            old = [pid for pid, name in watch.models.items() if name == model]
            if left := _stop_leftovers(server, old):
                log(f"the reload left {len(left)} stub(s) of the old {model} running (Triton did not finalize "
                    f"it: a request was in its crashed stub); stopped them: {', '.join(map(str, left))}")  # fmt: skip
            watch = StubWatch(server)
            log(f"{done} and ready ({len(watch.models)} Python stubs)")
    return 0


def _wait_for_old_stubs(server: TritonServer, expected: int, stop, timeout_s: float = 10.0) -> None:
    """Wait (at most ``timeout_s``) until no more stubs run, and no more shared-memory regions are
    left, than the configs ask for: Triton finalizes an unloaded model's instances after their
    replacements load (measured: the surviving stub of a two-instance model outlived the reload by up
    to 2 s), and it unlinks a dead stub's region after the stub is gone (CI once counted the region
    a moment after the stub), so a stub or region counted before then is not a live one."""
    deadline = time.monotonic() + timeout_s

    def old_ones_left() -> bool:
        return len(server.stub_pids()) > expected or len(shm.regions(server.shm_prefix)) > expected

    while old_ones_left() and time.monotonic() < deadline and not stop.wait(0.1):
        pass


def _stop_leftovers(server: TritonServer, old: list[int], timeout_s: float = 2.0) -> list[int]:
    """SIGKILL the stubs of ``old`` (a model's stubs before its reload) that still run: after a stub
    crashed with a request in it, Triton 2.51 never finalizes that model's old version, and its other
    stubs ran on, unused, at ~47 MB each per crash (measured: a 100-byte gRPC request whose shape's
    byte size overflows kills the stub that reads it). Their 1 MiB regions stay until the server
    stops. Returns the pids stopped, once they have exited (at most ``timeout_s``)."""
    left = [pid for pid in server.stub_pids() if pid in old]
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout_s
    while any(procfs.alive(pid) for pid in left) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def _recover(server: TritonServer, model: str | None, log, stop) -> str | None:
    """Reload ``model`` if given, else (or if that fails) restart the server (given up once ``stop``
    is set); what was done, or None."""
    if model is not None:
        try:
            server.reload_model(model)
            return f"{model} reloaded"
        except ServerError as exc:
            log(f"reloading {model} failed ({exc}); restarting tritonserver")
    try:
        server.restart(cancel=stop)
        return "tritonserver restarted" + (f" ({server.gpu_sharing})" if server.gpu_sharing else "")
    except ServerError as exc:  # e.g. a model that no longer loads: the next recovery waits longer
        log(f"restarting tritonserver failed: {exc}")
        return None
