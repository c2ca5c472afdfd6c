"""Reading Linux's /proc: the children of a process, which are Python stubs, how busy the CPU is,
and which of our directories belong to processes that are gone."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

STUB_EXECUTABLE = b"triton_python_backend_stub"


def children(pid: int) -> list[int]:
    try:
        return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def is_stub(pid: int) -> bool:
    try:
        return STUB_EXECUTABLE in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def command_name(pid: int) -> str:
    """The process's executable name as /proc/PID/comm holds it (its first 15 characters); "" if gone."""
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _state(pid: int) -> str:
    """The process's state letter (R, S, Z ...), or "" when there is no such process."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return ""


def alive(pid: int) -> bool:
    """Running (not exited, not a zombie waiting to be reaped)."""
    return _state(pid) not in ("", "Z")


def zombie(pid: int) -> bool:
    """Exited, and not yet reaped by its parent (as a crashed Python stub stays until Triton unloads its model)."""
    return _state(pid) == "Z"


def stub_model(pid: int) -> str:
    """The model a stub serves, from its model.py path (``<repository>/<model>/<version>/model.py``)."""
    try:
        return Path(Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[1].decode()).parent.parent.name
    except (OSError, IndexError, UnicodeDecodeError):
        return "unknown model"


def cpu_ticks() -> tuple[int, int] | None:
    """(busy, total) clock ticks of all this machine's cores since boot; None where /proc/stat is unreadable."""
    try:
        ticks = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except (OSError, ValueError):
        return None
    idle = ticks[3] + ticks[4]  # idle, iowait; the rest (user .. steal) is busy
    return sum(ticks) - idle, sum(ticks)


def owned_directory(prefix: str) -> Path:
    """A new directory only this user may enter (mode 0700) in the temporary directory, named
    ``<prefix><pid>-<random>`` after this process, so that :func:`orphaned_directories` finds it once
    the process is gone (a SIGKILLed serve cleans up nothing)."""
    return Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-"))


def orphaned_directories(prefix: str, parent: Path | None = None) -> list[Path]:
    """The :func:`owned_directory` directories of ``prefix`` whose process no longer runs: directories
    (not links) of this user with mode 0700, as mkdtemp made them, so that what another user put in
    the shared temporary directory under such a name is never acted on."""
    orphaned = []
    for directory in Path(parent or tempfile.gettempdir()).glob(f"{prefix}*-*"):
        pid = directory.name.removeprefix(prefix).split("-", 1)[0]
        try:
            info = directory.lstat()
        except OSError:
            continue
        ours = stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid() and stat.S_IMODE(info.st_mode) == 0o700
        if ours and pid.isdigit() and not alive(int(pid)):
            orphaned.append(directory)
    return orphaned
