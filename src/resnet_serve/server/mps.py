"""NVIDIA's Multi-Process Service (MPS) for a GPU server: a control daemon of its own, started before
tritonserver and stopped after it.

Why: every instance of a GPU model is a process with its own CUDA context, and without MPS those
contexts take turns on a GPU in time slices; a profile found half of each instance's time waiting
for its own GPU work (benchmarks/RESULTS.md, stop 20). Under an MPS daemon they run on the GPU at
once: one H100, fused, 8 images/request, 8 instances served 10,350 img/s with MPS and 7,360 without
(same run, stop 21).

The daemon is private: its pipe directory is given to this server's processes alone (other CUDA
programs of the machine do not use it), and a host that runs its own daemon (its pipe directory in
``$CUDA_MPS_PIPE_DIRECTORY``, or the default one) keeps it. A ``$CUDA_VISIBLE_DEVICES`` of GPU
numbers reaches the daemon and its clients as the same GPUs' UUIDs: NVIDIA's MPS documentation says
the daemon's GPUs are renumbered from 0 for its clients, so the numbers name other GPUs there, and
a client without the variable sees one GPU through CUDA but every GPU through NVML, which torch
counts by (a serve on ``CUDA_VISIBLE_DEVICES=0`` of 4 x H200 failed to load:
``device=1, num_gpus=1``, stop 22). A CUDA driver that cannot reach the daemon runs its
program without MPS, so before the server starts a small process makes a context on each of the
server's GPUs and, while it holds them, the daemon must list an MPS server: where it does not (no daemon binary in
the container, a GPU mode MPS refuses), ``auto`` serves without MPS and says why, ``on`` fails.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from resnet_serve.server import procfs
from resnet_serve.server.binary import ServerError

CONTROL = "nvidia-cuda-mps-control"
MPS_COMMAND_NAME = CONTROL[:15]  # /proc/PID/comm of the control daemon and of its nvidia-cuda-mps-server
PIPE_VARIABLE, LOG_VARIABLE = "CUDA_MPS_PIPE_DIRECTORY", "CUDA_MPS_LOG_DIRECTORY"
VISIBLE_VARIABLE = "CUDA_VISIBLE_DEVICES"
DEFAULT_PIPE_DIRECTORY = Path("/tmp/nvidia-mps")  # where clients look when PIPE_VARIABLE is unset
MpsMode = Literal["auto", "on", "off"]
MPS_MODES: tuple[MpsMode, ...] = ("auto", "on", "off")
MAX_SOCKET_PATH = 107  # sun_path is 108 bytes on Linux, its terminating NUL included
STOP_WAIT_S = 10.0
DIRECTORY_PREFIX = "resnet-serve-mps-"  # a daemon's directory: procfs.owned_directory

# Small CUDA programs run with the driver's own library: no torch to import, and no CUDA context in
# the serving process itself.
_CUDA = """
import ctypes, subprocess, sys
cuda = ctypes.CDLL("libcuda.so.1")
def check(call, *args):
    code = getattr(cuda, call)(*args)
    if code:
        name = ctypes.c_char_p()
        cuda.cuGetErrorName(code, ctypes.byref(name))
        sys.exit(f"{call} failed: {(name.value or b'?').decode()} ({code})")
check("cuInit", 0)
"""
# The UUIDs of the GPUs this environment shows CUDA, in CUDA's order, as $CUDA_VISIBLE_DEVICES takes
# them. For a MIG instance the two UUID calls differ (_v2 gives the instance's): such ids are left
# to the user, who can read them from `nvidia-smi -L`.
_UUIDS = (
    _CUDA
    + """
count = ctypes.c_int()
check("cuDeviceGetCount", ctypes.byref(count))
for index in range(count.value):
    device, gpu, uuid = ctypes.c_int(), ctypes.create_string_buffer(16), ctypes.create_string_buffer(16)
    check("cuDeviceGet", ctypes.byref(device), index)
    check("cuDeviceGetUuid", gpu, device)
    check("cuDeviceGetUuid_v2", uuid, device)
    if gpu.raw != uuid.raw:
        sys.exit(f"CUDA device {index} is a MIG instance: give MIG ids (nvidia-smi -L) instead of numbers")
    digits = uuid.raw.hex()
    print(f"GPU-{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:]}")
"""
)
# A context on each GPU given (CUDA's numbers), as an instance would make one; while they are held,
# the daemon must list an MPS server, or CUDA ran without it.
_PROBE = (
    _CUDA
    + """
devices = [ctypes.c_int() for _ in sys.argv[2:]]
for device, index in zip(devices, sys.argv[2:]):
    check("cuDeviceGet", ctypes.byref(device), int(index))
    check("cuDevicePrimaryCtxRetain", ctypes.byref(ctypes.c_void_p()), device)
listed = subprocess.run([sys.argv[1]], input=b"get_server_list\\n", capture_output=True, timeout=30).stdout
for device in devices:
    check("cuDevicePrimaryCtxRelease_v2", device)
if not listed.split():
    sys.exit("CUDA ran without it (the daemon started no MPS server)")
"""
)


@dataclass(frozen=True, kw_only=True)
class MpsDaemon:
    """One running control daemon, in ``directory`` (its pipes and logs)."""

    control: Path
    directory: Path
    visible_devices: str | None = None  # $CUDA_VISIBLE_DEVICES as UUIDs, for the daemon and its clients

    @property
    def pipe_directory(self) -> Path:
        return self.directory / "pipe"

    @property
    def log_directory(self) -> Path:
        return self.directory / "log"

    @property
    def environment(self) -> dict[str, str]:
        env = {PIPE_VARIABLE: str(self.pipe_directory), LOG_VARIABLE: str(self.log_directory)}
        return env if self.visible_devices is None else {**env, VISIBLE_VARIABLE: self.visible_devices}

    def client_environment(self, env: Mapping[str, str]) -> dict[str, str]:
        """``env`` for the daemon or a process whose CUDA goes through it."""
        return {**{k: v for k, v in env.items() if k != VISIBLE_VARIABLE}, **self.environment}

    def control_command(
        self, *args: str, command: bytes | None = None, env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess:
        stdin = {"input": command} if command is not None else {"stdin": subprocess.DEVNULL}
        env = self.client_environment(os.environ if env is None else env)
        return subprocess.run([str(self.control), *args], **stdin, capture_output=True, env=env, timeout=30)

    def daemon_pid(self) -> int | None:
        """The control daemon's process, from the pid file it writes in its pipe directory; None where
        no process of that pid runs the control program (a daemon long gone, its pid reused)."""
        try:
            pid = int((self.pipe_directory / "nvidia-cuda-mps-control.pid").read_text())
        except (OSError, ValueError):
            return None
        return pid if procfs.command_name(pid) == MPS_COMMAND_NAME else None

    def server_pids(self) -> list[int]:
        """The MPS servers this daemon runs (one per user; started by the first client)."""
        listed = self.control_command(command=b"get_server_list\n").stdout.split()
        return [int(pid) for pid in listed if pid.isdigit()]

    def log_tail(self, lines: int = 3) -> str:
        try:
            text = (self.log_directory / "control.log").read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return " | ".join(text[-lines:])

    def stop(self) -> None:
        """Ask the daemon to quit (its server goes with it once the clients are gone); kill what is
        left after STOP_WAIT_S, MPS processes only (whatever a pid file or a socket says); remove its
        directory."""
        daemon = self.daemon_pid()
        pids = [] if daemon is None else [daemon]
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):  # gone, or hung: killed below
            pids += [pid for pid in self.server_pids() if procfs.command_name(pid) == MPS_COMMAND_NAME]
            self.control_command(command=b"quit\n")
        deadline = time.monotonic() + STOP_WAIT_S
        while any(map(procfs.alive, pids)) and time.monotonic() < deadline:
            time.sleep(0.1)
        for pid in filter(procfs.alive, pids):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.directory, ignore_errors=True)


def start_daemon(
    mode: MpsMode, gpus: Sequence[int], env: Mapping[str, str] | None = None
) -> tuple[MpsDaemon | None, str]:
    """Start a daemon for a server on ``gpus`` (empty: a CPU server, which gets none) as ``mode`` says.

    Returns the daemon (None: serve without one) and a line saying what the server's GPUs share.
    Raises ServerError where ``mode`` is "on" and MPS cannot run.
    """
    if mode not in MPS_MODES:
        raise ServerError(f"MPS mode must be one of {', '.join(MPS_MODES)}; got {mode!r}")
    env = os.environ if env is None else env
    if not gpus:
        return None, ""
    if mode == "off":
        return None, "no MPS daemon of its own (--mps off)"
    host = env.get(PIPE_VARIABLE) or ((DEFAULT_PIPE_DIRECTORY / "control").exists() and str(DEFAULT_PIPE_DIRECTORY))
    if host:
        return None, f"MPS: the host's daemon ({host})"
    control = shutil.which(CONTROL, path=env.get("PATH"))
    if control is None:
        return _without(mode, f"{CONTROL} is not on PATH")
    try:
        visible = _visible_uuids(env)
    except OSError as exc:
        return _without(mode, str(exc))
    stop_orphans(Path(control))
    directory = procfs.owned_directory(DIRECTORY_PREFIX)
    daemon = MpsDaemon(control=Path(control), directory=directory, visible_devices=visible)
    try:
        _start(daemon, gpus, env)
    except (OSError, subprocess.TimeoutExpired) as exc:
        log = daemon.log_tail()
        daemon.stop()
        return _without(mode, f"the MPS daemon did not work: {exc}" + (f" (its log: {log})" if log else ""))
    except BaseException:  # interrupted: no daemon left behind
        daemon.stop()
        raise
    return daemon, f"MPS: a daemon of this server's own ({daemon.directory})"


def stop_orphans(control: Path, parent: Path | None = None) -> int:
    """Stop the daemons that serves of this project left when they died (the pid in the directory's
    name no longer runs: a SIGKILLed serve's daemon, which daemonized beyond the parent-death signal)
    and remove their directories; how many. Those of live processes and other names are left alone."""
    orphaned = procfs.orphaned_directories(DIRECTORY_PREFIX, parent)
    for directory in orphaned:
        MpsDaemon(control=control, directory=directory).stop()
    return len(orphaned)


def _start(daemon: MpsDaemon, gpus: Sequence[int], env: Mapping[str, str]) -> None:
    """Start ``daemon`` and check that CUDA runs through it on ``gpus``; OSError says why not."""
    if len(socket := str(daemon.pipe_directory / "control")) > MAX_SOCKET_PATH:
        raise OSError(f"its socket path would be {len(socket)} bytes, more than a Unix socket takes: {socket}")
    daemon.pipe_directory.mkdir()
    daemon.log_directory.mkdir()
    started = daemon.control_command("-d", env=env)
    if started.returncode != 0:
        raise OSError(f"{CONTROL} -d exited with {started.returncode}: {_text(started)}")
    probe = _run_python(_PROBE, str(daemon.control), *map(str, gpus), env=daemon.client_environment(env))
    if probe.returncode != 0:
        raise OSError(f"a CUDA process could not run through it: {_text(probe)}")


def _visible_uuids(env: Mapping[str, str]) -> str | None:
    """``env``'s $CUDA_VISIBLE_DEVICES with GPU numbers replaced by the UUIDs of the GPUs CUDA shows
    for them; OSError says why not. Unset (every GPU) stays None, and a value with no numbers (UUIDs,
    MIG ids; "" or -1, no GPU) is passed on as it is."""
    visible = env.get(VISIBLE_VARIABLE)
    entries = [] if visible is None else visible.split(",")
    if not any(entry.strip().isdigit() for entry in entries):
        return visible
    listed = _run_python(_UUIDS, env=env)
    uuids = listed.stdout.decode().split()
    if listed.returncode != 0:
        raise OSError(f"{VISIBLE_VARIABLE}={visible!r}: CUDA could not list these GPUs: {_text(listed)}")
    if len(uuids) != len(entries):  # CUDA stops at the first entry it cannot find
        raise OSError(f"{VISIBLE_VARIABLE}={visible!r} names {len(entries)} GPUs, but CUDA finds {len(uuids)}")
    return ",".join(uuids)


def _run_python(script: str, *args: str, env: Mapping[str, str]) -> subprocess.CompletedProcess:
    """Run one of this module's CUDA programs; OSError if it has not ended after a minute."""
    try:
        return subprocess.run([sys.executable, "-c", script, *args], capture_output=True, env=dict(env), timeout=60)
    except subprocess.TimeoutExpired:
        raise OSError("a CUDA process had not ended after 60 s") from None


def _without(mode: MpsMode, why: str) -> tuple[None, str]:
    if mode == "on":
        raise ServerError(f"--mps on: {why}")
    return None, f"without MPS: {why} (the GPU's instances take turns on it)"


def _text(result: subprocess.CompletedProcess) -> str:
    return (result.stderr or result.stdout or b"").decode(errors="replace").strip()[-500:] or "no output"
