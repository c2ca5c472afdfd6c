"""Soak: steady load against a real server for a bounded time, reporting throughput, p99, failed
requests and the server's memory (tritonserver + its Python stubs) window by window.

    python benchmarks/soak.py --minutes 30 --concurrency 32          # the long run (RESULTS.md)
    python benchmarks/soak.py --minutes 1 --concurrency 8 --json out.json

Starts its own tritonserver on loopback with the repository `resnet-serve repo` writes (default
build/model_repository), stops it at the end. Exit status 1 when a good request failed or the
memory grew by more than --max-rss-growth after the warm-up (the first fifth of the windows).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from resnet_serve.bench import LoadGenerator
from resnet_serve.client import read_images
from resnet_serve.server import ServerSettings, TritonServer

DEFAULT_IMAGE = Path(__file__).resolve().parents[2] / "shared" / "data" / "mug.jpg"


def process_tree_rss_mb(root_pid: int) -> float:
    """Resident memory of a process and all its descendants, from /proc (Linux)."""
    children: dict[int, list[int]] = {}
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":", 1) for line in status.read_text().splitlines() if ":" in line)
            children.setdefault(int(fields["PPid"]), []).append(int(fields["Pid"]))
        except (OSError, KeyError, ValueError):
            continue
    total_kb, stack = 0, [root_pid]
    while stack:
        pid = stack.pop()
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kb += int(line.split()[1])
        except OSError:
            pass
        stack.extend(children.get(pid, []))
    return total_kb / 1024


def soak(server: TritonServer, images: list[bytes], concurrency: int, windows: int, window_s: float) -> list[dict]:
    """One row per window: img/s, p99, errors and the server's RSS at the window's end."""
    generator = LoadGenerator(server.grpc_url, "grpc", images)
    rows = []
    for index in range(windows):
        point = generator.point("soak", concurrency, window_s, warmup_s=0.0)
        row = {
            "window": index,
            "img_per_s": round(point.img_per_s, 2),
            "p99_ms": round(point.p99_ms, 1),
            "errors": point.errors,
            "first_error": point.first_error,
            "rss_mb": round(process_tree_rss_mb(server.process.pid), 1),
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repository", type=Path, default=Path("build/model_repository"))
    parser.add_argument("--image", nargs="+", default=[str(DEFAULT_IMAGE)])
    parser.add_argument("--minutes", type=float, default=1.0)
    parser.add_argument("--window", type=float, default=10.0, help="seconds per reported window")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--max-rss-growth", type=float, default=0.05)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    windows = max(2, int(args.minutes * 60 / args.window))
    settings = ServerSettings.on_free_ports(args.repository.resolve())
    with TritonServer(settings) as server:
        rows = soak(server, read_images(args.image), args.concurrency, windows, args.window)
    warmup = max(1, len(rows) // 5)  # the first fifth: arenas and shared-memory pools fill up
    growth = rows[-1]["rss_mb"] / rows[warmup - 1]["rss_mb"] - 1
    failed = sum(row["errors"] for row in rows)
    summary = {"windows": rows, "rss_growth_after_warmup": round(growth, 4), "failed_requests": failed}
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))
    print(f"RSS growth after warm-up: {growth:+.1%}; failed requests: {failed}")
    return 0 if failed == 0 and growth <= args.max_rss_growth else 1


if __name__ == "__main__":
    sys.exit(main())
