"""Plain progress lines for long steps (stderr, so --json output stays clean)."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@contextmanager
def step(message: str) -> Iterator[None]:
    """Print ``message ...`` and, when the block ends, how long it took."""
    say(f"{message} ...")
    start = time.perf_counter()
    try:
        yield
    except BaseException:
        say(f"{message}: failed after {time.perf_counter() - start:.1f} s")
        raise
    say(f"{message}: done in {time.perf_counter() - start:.1f} s")


def warn(message: str) -> None:
    """A warning nobody should miss."""
    bar = "!" * 78
    say(f"{bar}\nWARNING: {message}\n{bar}")
