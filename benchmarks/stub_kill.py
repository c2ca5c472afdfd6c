"""A Python stub killed under steady load: failed requests and seconds of outage, per recovery mode.

    python benchmarks/stub_kill.py --repository build/model_repository --rounds 2 --json out.json

Starts its own tritonserver on loopback under ``supervise`` and sends paced gRPC requests (one
image each) from a few threads. Each round kills the ``preprocess`` stub (SIGKILL) and waits until
requests succeed again, in one of two modes, interleaved (reload, restart, reload, restart ...) so
that the machine's noise hits both alike:

- ``reload``: what ``serve`` does now (unload + load the dead stub's model alone);
- ``restart``: the whole-server restart it did before (the reload made to fail, so supervise falls
  back to restarting, as the old code always did).

Outage: from the kill to the first success after the last failure. A client that fails makes a
new connection for its next request (gRPC's own reconnect backoff would otherwise add seconds).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import threading
import time
from pathlib import Path

from resnet_serve.client import TritonClassifier
from resnet_serve.server import ServerError, ServerSettings, TritonServer, supervise
from resnet_serve.server.backoff import Backoff

DEFAULT_IMAGE = Path(__file__).resolve().parents[2] / "shared" / "data" / "mug.jpg"


class PacedLoad:
    """``threads`` clients, each sending one request every ``1/rate`` seconds; records (start, end, ok)."""

    def __init__(self, url: str, image: bytes, threads: int, rate: float):
        self.url, self.image, self.period = url, image, 1.0 / rate
        self.results: list[tuple[float, float, bool]] = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._client, daemon=True) for _ in range(threads)]

    def _client(self) -> None:
        client, next_at = None, time.monotonic()
        while not self.stop.is_set():
            start, ok = time.monotonic(), False
            try:
                client = client or TritonClassifier(self.url, timeout_s=30)
                client.logits([self.image])
                ok = True
            except Exception:  # any failure counts; reconnect for the next request
                client = None
            self.results.append((start, time.monotonic(), ok))
            next_at += self.period
            self.stop.wait(max(0.0, next_at - time.monotonic()))

    def __enter__(self) -> PacedLoad:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(60)


def kill_round(server: TritonServer, load: PacedLoad, said: list[str], settle_s: float) -> dict:
    """Kill the preprocess stub; wait until recovered and ``settle_s`` more; the round's figures."""
    (pid,) = [pid for pid in server.stub_pids() if b"/preprocess/" in Path(f"/proc/{pid}/cmdline").read_bytes()]
    logged = len(said)
    killed_at = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    while not any("and ready" in line for line in said[logged:]):
        time.sleep(0.05)
    recovered_s = time.monotonic() - killed_at
    time.sleep(settle_s)
    during = [r for r in load.results if r[1] >= killed_at]
    failures = [r for r in during if not r[2]]
    last_failure = max((r[1] for r in failures), default=killed_at)
    first_success = min((r[1] for r in during if r[2] and r[1] > last_failure), default=float("nan"))
    return {
        "failed_requests": len(failures),
        "outage_s": round(first_success - killed_at, 2),
        "recovered_s": round(recovered_s, 2),
        "log": said[logged:],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repository", type=Path, default=Path("build/model_repository"))
    parser.add_argument("--image", type=Path, default=DEFAULT_IMAGE)
    parser.add_argument("--rounds", type=int, default=2, help="rounds per mode, interleaved")
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--rate", type=float, default=2.0, help="requests per second per thread")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds of load after each recovery")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    settings = ServerSettings.on_free_ports(args.repository.resolve())
    server = TritonServer(settings, log_path=Path("/tmp") / f"stub_kill-{os.getpid()}.log").start()
    reload_model, said, stop = server.reload_model, [], threading.Event()

    def no_reload(model: str) -> None:
        raise ServerError("reload disabled for this round: the old whole-server restart")

    # Every kill is a first recovery (no backoff wait), as a single stub death after a quiet spell is.
    watcher = threading.Thread(target=supervise, args=(server, stop, said.append, Backoff(reset_after_s=0)))
    watcher.start()
    rounds = []
    try:
        with PacedLoad(server.grpc_url, args.image.read_bytes(), args.threads, args.rate) as load:
            time.sleep(args.settle)  # warm-up
            for mode in ["reload", "restart"] * args.rounds:
                server.reload_model = reload_model if mode == "reload" else no_reload
                rounds.append({"mode": mode, **kill_round(server, load, said, args.settle)})
                print(json.dumps({k: v for k, v in rounds[-1].items() if k != "log"}), flush=True)
            ok_latency = [end - start for start, end, ok in load.results if ok]
    finally:
        stop.set()
        watcher.join(120)
        server.stop()
    summary = {
        mode: {
            key: statistics.median(r[key] for r in rounds if r["mode"] == mode)
            for key in ("failed_requests", "outage_s", "recovered_s")
        }
        for mode in ("reload", "restart")
    }
    report = {
        "load": f"{args.threads} threads x {args.rate}/s, one {args.image.name} per request, gRPC",
        "p50_latency_ms": round(1000 * statistics.median(ok_latency), 1),
        "median_by_mode": summary,
        "rounds": rounds,
    }
    print(json.dumps({k: v for k, v in report.items() if k != "rounds"}, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
