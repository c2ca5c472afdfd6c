"""Good requests' latency alone, beside a stream of refused hostile images, and beside a stream of the
costliest images the limits allow: what one request can cost the others.

    python benchmarks/isolation.py --repository build/model_repository --seconds 20

One tritonserver (loopback). Good traffic: one 500x375 JPEG per request, ``--good`` clients in a
closed loop over gRPC. Bad traffic, one client in a closed loop beside them, in turn:

- ``none``: the good traffic alone;
- ``refused``: the hostile images of issue 28, now refused (tests/hostile_payloads.py builds them:
  WebP frames nested 3,000 deep, a run-length BMP, an arithmetic-coded JPEG, a JPEG of 200,000 empty
  comment segments, a PNG whose stream holds a tenth of its rows, a JPEG cut to 2% and closed);
- ``allowed``: a 24-megapixel progressive JPEG (decoded at full size: libjpeg holds its whole
  coefficient buffer), the kind of image a limit lets through and a time budget would have to stop.

Prints, per condition, the good requests' img/s, p50 and p99, and the bad requests sent and refused.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import threading
import time
from pathlib import Path

from PIL import Image

from resnet_serve import bench
from resnet_serve.client import TritonClassifier
from resnet_serve.server import ServerSettings, TritonServer

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import hostile_payloads as hp  # the tests' builders of the same images


def _jpeg(image: Image.Image, **params) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", **params)
    return out.getvalue()


class Closed:
    """``clients`` threads, each sending its next request when the last one is answered."""

    def __init__(self, url: str, images: list[bytes], clients: int):
        self.url, self.images, self.clients = url, images, clients
        self.latencies: list[float] = []
        self.refused = 0
        self.stop = threading.Event()

    def _run(self, index: int) -> None:
        with TritonClassifier(self.url) as client:
            while not self.stop.is_set():
                start = time.perf_counter()
                try:
                    client.logits([self.images[index % len(self.images)]])
                    self.latencies.append(time.perf_counter() - start)
                except Exception:
                    self.refused += 1
                index += 1

    def __enter__(self) -> Closed:
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(self.clients)]
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repository", type=Path, default=Path("build/model_repository"))
    parser.add_argument("--seconds", type=float, default=20.0, help="measured time per condition (default 20)")
    parser.add_argument("--good", type=int, default=2, help="good clients (default 2)")
    parser.add_argument("--json", type=Path, help="save the rows here")
    args = parser.parse_args()

    (good,) = bench.synthetic_photos(((500, 375),))
    (big,) = bench.synthetic_photos(((6000, 4000),))
    photo = Image.open(io.BytesIO(good))
    allowed = _jpeg(Image.open(io.BytesIO(big)), quality=90, progressive=True)
    refused = [payload.data for payload in hp.issue_28_refused(hp.base_images(photo))]
    conditions = {"none": [], "refused": refused, "allowed": [allowed]}
    rows = []
    settings = ServerSettings.on_free_ports(args.repository.resolve())
    with TritonServer(settings, log_path=Path("/tmp/isolation_bench.log")) as server:
        with Closed(server.grpc_url, [good], args.good):  # warm-up
            time.sleep(3)
        for name, bad in conditions.items():
            load = Closed(server.grpc_url, [good], args.good)
            hostile = Closed(server.grpc_url, bad, 1 if bad else 0)
            with load, hostile:
                time.sleep(args.seconds)
            latencies = sorted(load.latencies)
            row = {
                "bad": name,
                "good_img_per_s": round(len(latencies) / args.seconds, 1),
                "good_p50_ms": round(1000 * statistics.median(latencies), 1),
                "good_p99_ms": round(1000 * latencies[int(0.99 * (len(latencies) - 1))], 1),
                "good_failed": load.refused,
                "bad_sent": hostile.refused + len(hostile.latencies),
                "bad_refused": hostile.refused,
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
