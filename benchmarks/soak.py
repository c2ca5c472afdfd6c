"""Soak: steady load against a real server for a bounded time, reporting throughput, p99, failed
requests and the server's memory (tritonserver, its Python stubs and serve's HTTP front) window by
window.

    python benchmarks/soak.py --minutes 30 --concurrency 32          # the long run (RESULTS.md)
    python benchmarks/soak.py --minutes 30 --concurrency 32 --http-share 0.5   # half of it over HTTP
    python benchmarks/soak.py --minutes 1 --concurrency 8 --json out.json

Starts its own tritonserver on loopback with the repository `resnet-serve repo` writes (default
build/model_repository), stops it at the end. Exit status 1 when a good request failed or the
memory grew by more than --max-growth after the warm-up (the first fifth of the windows).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from resnet_serve.bench import LoadGenerator
from resnet_serve.client import read_images
from resnet_serve.server import ServerSettings, TritonServer, shm

DEFAULT_IMAGE = Path(__file__).resolve().parents[2] / "shared" / "data" / "mug.jpg"


def _process_name(server: TritonServer, pid: int) -> str:
    """tritonserver, serve's HTTP front, or a stub's model instance (its 9th argument, e.g. ``preprocess_0_0``)."""
    if pid == server.process.pid:
        return "tritonserver"
    if server.front is not None and pid == server.front.pid:
        return "http_front"
    return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[8].decode()


def server_memory_mb(server: TritonServer) -> dict:
    """Memory of tritonserver and its stubs, from /proc (Linux), in MB.

    ``memory``: resident memory with each page counted once (the goal is measured on this): every
    process's resident memory except its shared memory, plus the server's Python-backend regions in
    /dev/shm (their allocated pages). Why not summed RSS: tritonserver and the stubs map a region
    again each time it grows, and RSS counts a page once per mapping: 8 minutes into a soak,
    tritonserver held 32 mappings of a 50 MiB region (638 MiB mapped, RssShmem 306 MiB), so summed
    RSS rose in +49 MB steps while /dev/shm held 70 MiB throughout and PSS stayed flat.
    ``rss``: resident memory summed over the processes. ``pss``: shared pages split between their
    processes. ``shm_regions``: the regions' allocated size. ``by_process``: resident anonymous and
    shared memory of each process.
    """
    total = {"rss": 0.0, "pss": 0.0, "unshared": 0.0}
    by_process = {}
    front = [server.front.pid] if server.front is not None else []
    for pid in [server.process.pid, *front, *server.stub_pids()]:
        try:
            status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
            rollup = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:])
            name = _process_name(server, pid)
        except (OSError, ValueError, IndexError):
            continue  # exited meanwhile
        mb = {
            key: int(value.split()[0]) / 1024
            for key, value in status.items()
            if key in ("VmRSS", "RssAnon", "RssShmem")
        }
        total["rss"] += mb["VmRSS"]
        total["unshared"] += mb["VmRSS"] - mb["RssShmem"]
        total["pss"] += int(rollup["Pss"].split()[0]) / 1024
        by_process[name] = {"anon": round(mb["RssAnon"], 1), "shmem": round(mb["RssShmem"], 1)}
    regions = sum(path.stat().st_blocks * 512 for path in shm.regions(server.shm_prefix)) / 2**20
    return {
        "memory_mb": round(total["unshared"] + regions, 1),
        "rss_mb": round(total["rss"], 1),
        "pss_mb": round(total["pss"], 1),
        "shm_regions_mb": round(regions, 1),
        "by_process": by_process,
    }


def soak(
    server: TritonServer, images: list[bytes], concurrency: int, windows: int, window_s: float, http_share: float = 0.0
) -> list[dict]:
    """One row per window: img/s, p99, errors and the server's memory at the window's end.
    ``http_share`` of the clients go through serve's HTTP front, the others over gRPC, at once."""
    over_http = round(concurrency * http_share)
    loads = [(LoadGenerator(server.grpc_url, "grpc", images), concurrency - over_http),
             (LoadGenerator(server.http_url, "http", images), over_http)]  # fmt: skip
    loads = [(load, clients) for load, clients in loads if clients]
    rows = []
    with ThreadPoolExecutor(len(loads)) as pool:
        for index in range(windows):
            running = [pool.submit(load.point, load.protocol, clients, window_s, 0.0) for load, clients in loads]
            points = [future.result() for future in running]
            row = {
                "window": index,
                "img_per_s": round(sum(point.img_per_s for point in points), 2),
                "p99_ms": round(max(point.p99_ms for point in points), 1),  # the slower protocol's
                "errors": sum(point.errors for point in points),
                "first_error": next((point.first_error for point in points if point.first_error), ""),
                **{f"{point.setup}_img_per_s": round(point.img_per_s, 2) for point in points},
                **server_memory_mb(server),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def by_thirds(rows: list[dict]) -> dict[str, dict[str, float]]:
    """Median throughput, p99 and memory over the first, middle and last third of the windows."""
    size = max(1, len(rows) // 3)
    parts = {"first": rows[:size], "middle": rows[size:-size] or rows[:size], "last": rows[-size:]}
    keys = ("img_per_s", "p99_ms", "memory_mb")
    medians = {name: {key: statistics.median(row[key] for row in part) for key in keys} for name, part in parts.items()}
    return {name: {key: round(value, 1) for key, value in values.items()} for name, values in medians.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repository", type=Path, default=Path("build/model_repository"))
    parser.add_argument("--image", nargs="+", default=[str(DEFAULT_IMAGE)])
    parser.add_argument("--minutes", type=float, default=1.0)
    parser.add_argument("--window", type=float, default=10.0, help="seconds per reported window")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--http-share", type=float, default=0.0, help="of the clients, over HTTP (default 0)")
    parser.add_argument("--max-growth", type=float, default=0.05, help="of memory_mb after the warm-up")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if not 0 <= args.http_share <= 1:
        parser.error(f"--http-share is a fraction from 0 to 1, got {args.http_share}")
    windows = max(2, int(args.minutes * 60 / args.window))
    settings = ServerSettings.on_free_ports(args.repository.resolve())
    with TritonServer(settings) as server:
        rows = soak(server, read_images(args.image), args.concurrency, windows, args.window, args.http_share)
    warmup = max(1, len(rows) // 5)  # the first fifth: arenas and shared-memory pools fill up

    def growth(key: str) -> float:
        return round(rows[-1][key] / rows[warmup - 1][key] - 1, 4)

    failed = sum(row["errors"] for row in rows)
    summary = {
        "windows": rows,
        "memory_growth_after_warmup": growth("memory_mb"),
        "rss_growth_after_warmup": growth("rss_mb"),  # summed RSS, for comparison (server_memory_mb says why not)
        "pss_growth_after_warmup": growth("pss_mb"),
        "failed_requests": failed,
        "thirds": by_thirds(rows),
    }
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))
    for name, third in summary["thirds"].items():
        print(f"{name} third: {third['img_per_s']} img/s, p99 {third['p99_ms']} ms, {third['memory_mb']} MB (medians)")
    memory = summary["memory_growth_after_warmup"]
    print(
        f"Memory growth after warm-up: {memory:+.1%} (summed RSS {summary['rss_growth_after_warmup']:+.1%}, "
        f"PSS {summary['pss_growth_after_warmup']:+.1%}); failed requests: {failed}"
    )
    return 0 if failed == 0 and memory <= args.max_growth else 1


if __name__ == "__main__":
    sys.exit(main())
