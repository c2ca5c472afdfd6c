"""NVIDIA's Multi-Process Service (MPS) for a GPU server: a control daemon of its own, started before
tritonserver and stopped after it.

Why: every instance of a GPU model is a process with its own CUDA context, and without MPS those
contexts take turns on a GPU in time slices; a profile found half of each instance's time waiting
for its own GPU work (benchmarks/RESULTS.md, stop 20). Under an MPS daemon they run on the GPU at
once: one H100, fused, 8 images/request, 8 instances served 10,350 img/s with MPS and 7,360 without
(same run, stop 21).

The daemon is private: its pipe directory is given to this server's processes alone (other CUDA
programs of the machine do not use it), and a host that runs its own daemon (its pipe directory in
``$CUDA_MPS_PIPE_DIRECTORY``) keeps it. Before the server starts, a small process connects through
the daemon: where MPS cannot run (no daemon binary in the container, a GPU in a mode MPS refuses),
``auto`` serves without it and says why, ``on`` fails.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from resnet_serve.server.binary import ServerError

CONTROL = "nvidia-cuda-mps-control"
PIPE_VARIABLE, LOG_VARIABLE = "CUDA_MPS_PIPE_DIRECTORY", "CUDA_MPS_LOG_DIRECTORY"
MpsMode = Literal["auto", "on", "off"]
MPS_MODES: tuple[MpsMode, ...] = ("auto", "on", "off")

# Connects to CUDA as an instance would (a context on the first visible GPU), with the driver's own
# library: no torch to import, and no CUDA context in the serving process itself.
_PROBE = """
import ctypes, sys
cuda = ctypes.CDLL("libcuda.so.1")
device, context = ctypes.c_int(), ctypes.c_void_p()
for call, args in (("cuInit", (0,)), ("cuDeviceGet", (ctypes.byref(device), 0)),
                   ("cuDevicePrimaryCtxRetain", (ctypes.byref(context), device)),
                   ("cuDevicePrimaryCtxRelease_v2", (device,))):
    code = getattr(cuda, call)(*args)
    if code:
        name = ctypes.c_char_p()
        cuda.cuGetErrorName(code, ctypes.byref(name))
        sys.exit(f"{call} failed: {(name.value or b'?').decode()} ({code})")
"""


@dataclass(frozen=True, kw_only=True)
class MpsDaemon:
    """One running control daemon: ``environment`` points a process's CUDA at it."""

    control: Path
    directory: Path

    @property
    def environment(self) -> dict[str, str]:
        return {PIPE_VARIABLE: str(self.directory / "pipe"), LOG_VARIABLE: str(self.directory / "log")}

    def control_command(self, *args: str, command: bytes | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(self.control), *args],
            input=command,
            capture_output=True,
            env={**os.environ, **self.environment},
            timeout=30,
        )

    def stop(self) -> None:
        """Ask the daemon to quit (its server goes with its last client), then remove its directory."""
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):  # gone, or hung: its pipes go anyway
            self.control_command(command=b"quit\n")
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
    if mode == "off" or not gpus:
        return None, "without MPS (--mps off)" if gpus else ""
    if env.get(PIPE_VARIABLE):
        return None, f"MPS: the host's daemon ({PIPE_VARIABLE}={env[PIPE_VARIABLE]})"
    control = shutil.which(CONTROL, path=env.get("PATH"))
    if control is None:
        return _without(mode, f"{CONTROL} is not on PATH")
    daemon = MpsDaemon(control=Path(control), directory=Path(tempfile.mkdtemp(prefix="resnet-serve-mps-")))
    for path in daemon.environment.values():
        Path(path).mkdir()
    try:
        started = daemon.control_command("-d")
        if started.returncode != 0:
            raise OSError(f"{CONTROL} -d exited with {started.returncode}: {_text(started)}")
        probe = subprocess.run(
            [sys.executable, "-c", _PROBE], capture_output=True, env={**env, **daemon.environment}, timeout=60
        )
        if probe.returncode != 0:
            raise OSError(f"a CUDA process could not run through it: {_text(probe)}")
    except (OSError, subprocess.TimeoutExpired) as exc:
        daemon.stop()
        return _without(mode, f"the MPS daemon did not work: {exc}")
    except BaseException:  # interrupted: no daemon left behind
        daemon.stop()
        raise
    return daemon, f"MPS: a daemon of this server's own ({daemon.directory})"


def _without(mode: MpsMode, why: str) -> tuple[None, str]:
    if mode == "on":
        raise ServerError(f"--mps on: {why}")
    return None, f"without MPS: {why} (the GPU's instances take turns on it)"


def _text(result: subprocess.CompletedProcess) -> str:
    return (result.stderr or result.stdout or b"").decode(errors="replace").strip()[-500:] or "no output"
