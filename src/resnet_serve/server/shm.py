"""The Python backend's shared-memory regions in /dev/shm, named per server so that they can be removed.

Each Python-backend stub talks to tritonserver through a POSIX shared-memory region named
``<prefix><uuid>`` (Triton's default prefix is ``triton_python_backend_shm_region_``, the same for
every server on the machine). A server or stub that dies without cleaning up leaves its regions
behind (issue 14: 2.85 GB after a series of crashes). Giving each server start its own prefix
(``--backend-config=python,shm-region-prefix-name=...``) makes "this server's regions" exact.
"""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path

from resnet_serve.server import procfs

SHM_DIR = Path("/dev/shm")
_PREFIX = re.compile(r"^resnet_serve_(\d+)_[0-9a-f]{8}_")


def new_prefix() -> str:
    """A region-name prefix no other server uses: this process's id and random bytes."""
    return f"resnet_serve_{os.getpid()}_{secrets.token_hex(4)}_"


def backend_config_arg(prefix: str) -> str:
    return f"--backend-config=python,shm-region-prefix-name={prefix}"


def regions(prefix: str, shm_dir: Path = SHM_DIR) -> list[Path]:
    """The regions whose names start with ``prefix``."""
    return sorted(shm_dir.glob(f"{prefix}*")) if prefix else []


def remove_regions(prefix: str, shm_dir: Path = SHM_DIR) -> int:
    """Unlink the regions named ``prefix...`` (memory is freed once no process maps them); bytes freed."""
    freed = 0
    for path in regions(prefix, shm_dir):
        try:
            size = path.stat().st_size
            path.unlink()
        except FileNotFoundError:  # removed meanwhile (a stub that cleaned up after itself)
            continue
        freed += size
    return freed


def remove_orphans(shm_dir: Path = SHM_DIR) -> int:
    """Unlink the regions of servers started by a process of this project that no longer runs (its
    pid in the name; e.g. a serve killed before it could clean up); bytes freed. Regions of live
    processes, and every name that is not ours, are left alone."""
    owners = {match[0]: int(match[1]) for path in shm_dir.glob("resnet_serve_*") if (match := _PREFIX.match(path.name))}
    return sum(remove_regions(prefix, shm_dir) for prefix, pid in owners.items() if not procfs.alive(pid))
