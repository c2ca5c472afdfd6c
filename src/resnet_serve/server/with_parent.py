"""Run a command that stops when its parent dies: ``python with_parent.py PID COMMAND ...``.

Sets Linux's parent-death signal (SIGTERM) and then executes COMMAND in this same process (the signal
survives the exec), so that a tritonserver or HTTP front started by ``serve`` stops when ``serve``
dies, even by SIGKILL (the OOM killer's way; issue 28: a SIGKILLed serve left its server holding
the ports and the shared memory). PID is serve's: if it is already gone, COMMAND never starts.

Why a launcher rather than ``subprocess.Popen(preexec_fn=...)``: a preexec_fn runs Python in the
forked child, with Python's at-fork hooks, and gRPC's hook aborted the child of a process holding a
gRPC channel ("Epoll1Poller ... epoll_wait error: Bad file descriptor": once in a full test run). It
runs as a script, standard library only: importing this package would load gRPC in it too.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def command(parent: int, argv: list[str]) -> list[str]:
    """``argv`` run through this launcher, bound to ``parent``; as it is where there is no prctl."""
    if not sys.platform.startswith("linux"):
        return argv
    return [sys.executable, __file__, str(parent), *argv]


def main() -> None:
    parent, argv = int(sys.argv[1]), sys.argv[2:]
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # it died before the signal was set
        sys.exit(1)
    os.execvp(argv[0], argv)


if __name__ == "__main__":
    main()
