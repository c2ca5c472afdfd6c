"""serve's HTTP front against Triton's own HTTP and against gRPC, side by side on one server.

    python benchmarks/http_front.py --repository build/model_repository --seconds 10 --concurrency 1,8,32

Starts one tritonserver (loopback) with its HTTP front, and opens Triton's own HTTP front end on
another loopback port for this comparison only (serve never opens it: single requests crash it).
Then, for 1 and 8 images per request, runs bench's load generator against each endpoint in turn,
repeated ``--rounds`` times in alternation so that the machine's drift hits all alike, and prints
img/s and p99 per endpoint, with the front's ratio to Triton's HTTP.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from resnet_serve import bench
from resnet_serve.server import ServerSettings, TritonServer, free_port


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repository", type=Path, default=Path("build/model_repository"))
    parser.add_argument("--seconds", type=float, default=10.0, help="measured time per point (default 10)")
    parser.add_argument("--concurrency", default="1,8,32", help="requests in flight (default 1,8,32)")
    parser.add_argument("--rounds", type=int, default=2, help="alternations of the endpoints (default 2)")
    parser.add_argument("--json", type=Path, help="save the points here")
    args = parser.parse_args()

    triton_http = free_port()
    opened = ["--allow-http=true", "--http-address=127.0.0.1", f"--http-port={triton_http}"]
    settings = ServerSettings.on_free_ports(args.repository.resolve(), extra_args=opened)
    images = bench.synthetic_photos(((500, 375),))  # one size: the protocols' costs, not the decode mix
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    results: dict[tuple[str, int, int], list[bench.Point]] = {}
    with TritonServer(settings, log_path=Path("/tmp/http_front_bench.log")) as server:
        endpoints = {
            "front http": (server.http_url, "http"),
            "triton http": (f"127.0.0.1:{triton_http}", "http"),
            "grpc": (server.grpc_url, "grpc"),
        }
        for per_request in (1, 8):
            for _ in range(args.rounds):
                for name, (url, protocol) in endpoints.items():
                    generator = bench.LoadGenerator(url, protocol, images, per_request)
                    for point in bench.sweep(generator, name, concurrencies, args.seconds, 2.0):
                        results.setdefault((name, per_request, point.concurrency), []).append(point)
    rows = []
    print(f"{'endpoint':12} {'img/req':>7} {'in flight':>9} {'img/s':>8} {'p99 ms':>8} {'errors':>6}")
    for (name, per_request, concurrency), points in sorted(results.items(), key=lambda item: item[0][1:]):
        rate = statistics.median(p.img_per_s for p in points)
        p99 = statistics.median(p.p99_ms for p in points)
        errors = sum(p.errors for p in points)
        rows.append({"endpoint": name, "images_per_request": per_request, "concurrency": concurrency,
                     "images_per_s": rate, "p99_ms": p99, "errors": errors})  # fmt: skip
        print(f"{name:12} {per_request:7d} {concurrency:9d} {rate:8.1f} {p99:8.1f} {errors:6d}")
    print("\nfront / triton http (img/s; p99):")
    by_key = {(r["endpoint"], r["images_per_request"], r["concurrency"]): r for r in rows}
    for per_request in (1, 8):
        for concurrency in concurrencies:
            front = by_key[("front http", per_request, concurrency)]
            triton = by_key[("triton http", per_request, concurrency)]
            rate = front["images_per_s"] / triton["images_per_s"]
            p99 = front["p99_ms"] / triton["p99_ms"]
            print(f"  {per_request} img/req, {concurrency:3d} in flight: {rate:.2f}x img/s, {p99:.2f}x p99")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
