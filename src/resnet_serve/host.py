"""The CPU cores this process may use: its affinity, capped by a cgroup CPU quota (as Kubernetes sets).

``os.cpu_count()`` counts the host's cores, not ours: a container limited to 4 CPUs on a 64-core host
would start 64 decode threads and 64 inference threads on 4 cores' worth of time.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


def quota_cores(cpu_max: str) -> int | None:
    """Cores a cgroup v2 ``cpu.max`` line ("QUOTA PERIOD", or "max PERIOD") allows, rounded up; None: no cap."""
    fields = cpu_max.split()
    if len(fields) != 2 or not all(field.isdigit() for field in fields):  # "max PERIOD", or unreadable
        return None
    quota, period = int(fields[0]), int(fields[1])
    return max(1, math.ceil(quota / period)) if quota > 0 and period > 0 else None


def _cgroup_cpu_max(root: Path) -> str:
    """This cgroup's quota as a ``cpu.max`` line: cgroup v2's own file, or v1's quota and period."""
    try:
        return (root / "cpu.max").read_text()
    except OSError:
        pass
    try:
        quota = (root / "cpu" / "cpu.cfs_quota_us").read_text().strip()
        period = (root / "cpu" / "cpu.cfs_period_us").read_text().strip()
    except OSError:
        return ""
    return f"{quota} {period}"  # v1's "-1" (no quota) reads as no cap, as v2's "max"


def cgroup_chain(root: Path, proc_cgroup: str) -> list[Path]:
    """The cgroup v2 directory ``/proc/self/cgroup`` (``proc_cgroup``, "0::/PATH") names under ``root``,
    then each parent up to ``root``: a quota on any of them caps this process (systemd's CPUQuota= is
    set on a service's cgroup, above its processes'). Inside a cgroup namespace (a container) the
    root is the container's own cgroup: what lies above it is not visible, nor read."""
    path = next((line[3:].strip() for line in proc_cgroup.splitlines() if line.startswith("0::")), "/")
    parts = Path(path).parts[1:] if path.startswith("/") else ()
    return [root.joinpath(*parts[:depth]) for depth in range(len(parts), -1, -1)]


def available_cores(root: Path = CGROUP_ROOT, proc_cgroup: str | None = None) -> int:
    """The cores this process may run on: its CPU affinity, capped by the smallest CPU quota of its
    cgroup and the cgroups above it (``proc_cgroup``: /proc/self/cgroup's text, read when None)."""
    if proc_cgroup is None:
        try:
            proc_cgroup = Path("/proc/self/cgroup").read_text()
        except OSError:
            proc_cgroup = ""
    cores = len(os.sched_getaffinity(0))
    caps = [cap for directory in cgroup_chain(root, proc_cgroup) if (cap := quota_cores(_cgroup_cpu_max(directory)))]
    return min([cores, *caps])


# Under load the next batch is decoded while the classifier runs this one, on the same cores, and
# OpenVINO's threads meet at the end of every layer: one that a decode thread preempts stalls them
# all. So on 8 or more cores a busy classifier leaves a quarter of them free (decoding still may use
# every core). 16-core Xeon (AMX), 500x375 JPEG, decode + classify in one process, decode on 16
# threads (benchmarks/cpu_cores.py, RESULTS.md issue 31): classifier on 12 threads against 16, bf16
# 312 vs 222 img/s at batch 8 and 346 vs 302 at 32, int8 535 vs 359 and 602 vs 489. On 2 cores a
# quarter is no core: the classifier keeps every core, as before.
SHARE_FROM = 8


def classifier_share(cores: int) -> int:
    """Threads of a classifier busy beside decoding, on ``cores`` cores: three quarters from SHARE_FROM on."""
    return cores - cores // 4 if cores >= SHARE_FROM else cores
