"""Reading Linux's /proc: the children of a process, which are Python stubs, and how busy the CPU is."""

from __future__ import annotations

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


def alive(pid: int) -> bool:
    """Running (not exited, not a zombie waiting to be reaped)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


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
