"""Server memory after large hostile requests, with the default allocator or a preloaded one.

Starts tritonserver on the CPU repository (default limits), then measures each process's private
(anonymous) and shared memory, and the Python stubs' /dev/shm regions:

1. after one good request;
2. after a flood of 32 MiB requests (mug.jpg + 31 cut-off images, zero-padded), 4 at a time, sent
   with INPUT_LENGTHS and again without (the seed's contract), and 10 s later;
3. after one 1 GiB gRPC request (refused by the request-bytes limit), and 10 s later.

    python benchmarks/hostile_memory.py --onnx build/resnet50.onnx --allocator glibc
    python benchmarks/hostile_memory.py --onnx build/resnet50.onnx --allocator jemalloc-bg

Allocators other than glibc need Debian's libjemalloc2 / libtcmalloc-minimal4. One allocator per run:
the environment is the server's (and its stubs') from the start. Results: RESULTS.md.
"""

from __future__ import annotations

import argparse
import io
import os
import re
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import tritonclient.grpc as grpcclient
from PIL import Image
from tritonclient.utils import InferenceServerException

from resnet_serve.client import request_inputs
from resnet_serve.contract import ENSEMBLE_INPUT, ENSEMBLE_NAME
from resnet_serve.repository import RepositorySpec, write_repository
from resnet_serve.server import ServerSettings, TritonServer

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import hostile_payloads  # the test suite's payload builders

LIB = "/usr/lib/x86_64-linux-gnu"
ALLOCATORS = {
    "glibc": {},
    "glibc-mmap128k": {"MALLOC_MMAP_THRESHOLD_": "131072", "MALLOC_TRIM_THRESHOLD_": "131072"},
    "jemalloc": {"LD_PRELOAD": f"{LIB}/libjemalloc.so.2"},
    "jemalloc-bg": {
        "LD_PRELOAD": f"{LIB}/libjemalloc.so.2",
        "MALLOC_CONF": "background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0",
    },
    "tcmalloc": {"LD_PRELOAD": f"{LIB}/libtcmalloc_minimal.so.4"},
    "tcmalloc-decommit": {"LD_PRELOAD": f"{LIB}/libtcmalloc_minimal.so.4", "TCMALLOC_AGGRESSIVE_DECOMMIT": "true"},
}


def memory(server: TritonServer) -> str:
    """Each process's anonymous and shared resident MiB, and the stubs' /dev/shm regions."""
    parts, regions = [], 0
    for pid in [server.process.pid, *server.stub_pids()]:
        status = Path(f"/proc/{pid}/status").read_text()
        anon, shared = (int(re.search(rf"{key}:\s+(\d+)", status).group(1)) >> 10 for key in ("RssAnon", "RssShmem"))
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        name = "tritonserver" if pid == server.process.pid else argv[8].decode()
        if pid != server.process.pid and os.path.exists(region := f"/dev/shm/{argv[2].decode()}"):
            regions += os.path.getsize(region) >> 20
        parts.append(f"{name} anon {anon} MiB shm {shared} MiB")
    return "; ".join(parts) + f"; stub /dev/shm regions {regions} MiB"


def infer(url: str, images: list[bytes], lengths: bool) -> str:
    client = grpcclient.InferenceServerClient(url)
    inputs = request_inputs(grpcclient, images)[: 2 if lengths else 1]
    try:
        client.infer(ENSEMBLE_NAME, inputs)
        return "answered"
    except InferenceServerException as exc:
        return exc.message()
    finally:
        client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--onnx", type=Path, required=True)
    parser.add_argument("--image", type=Path, default=Path("../shared/data/mug.jpg"))
    parser.add_argument("--allocator", choices=ALLOCATORS, default="glibc")
    args = parser.parse_args()
    tag = f"[{args.allocator}]"
    work = Path(tempfile.mkdtemp(prefix="hostile-memory-"))
    root = write_repository(work / "model_repository", RepositorySpec(model_file=args.onnx.resolve()))
    saved = dict(os.environ)
    os.environ.update(ALLOCATORS[args.allocator])
    server = TritonServer(ServerSettings.on_free_ports(root), log_path=work / "tritonserver.log").start()
    os.environ.clear()
    os.environ.update(saved)
    try:
        big = args.image.read_bytes()
        bases = hostile_payloads.base_images(Image.open(io.BytesIO(big)))
        infer(server.grpc_url, [bases["jpeg"]], True)
        print(tag, "after one good request:", memory(server), flush=True)
        cut = [p.data for p in hostile_payloads.truncations(bases, per_image=120, seed=5)]
        requests = [[big, *cut[start : start + 31]] for start in range(0, len(cut), 31)]
        for lengths in (True, False):
            start = time.perf_counter()
            with ThreadPoolExecutor(4) as pool:
                list(pool.map(lambda images, lengths=lengths: infer(server.grpc_url, images, lengths), requests))
            how = "with" if lengths else "without"
            print(tag, f"{len(requests)} x 32 MiB requests {how} lengths: {time.perf_counter() - start:.1f} s")
            print(tag, f"  after them: {memory(server)}", flush=True)
            time.sleep(10)
            print(tag, f"  10 s later: {memory(server)}", flush=True)
        huge = np.zeros((1, 1 << 30), np.uint8)
        request = grpcclient.InferInput(ENSEMBLE_INPUT, list(huge.shape), "UINT8")
        request.set_data_from_numpy(huge)
        del huge
        start = time.perf_counter()
        try:
            grpcclient.InferenceServerClient(server.grpc_url).infer(ENSEMBLE_NAME, [request])
            outcome = "answered"
        except InferenceServerException as exc:
            outcome = exc.message()
        print(tag, f"1 GiB request: {outcome[:110]} after {time.perf_counter() - start:.1f} s")
        del request
        print(tag, f"  after it: {memory(server)}", flush=True)
        time.sleep(10)
        print(tag, f"  10 s later: {memory(server)}", flush=True)
        print(tag, "a good request after all of it:", infer(server.grpc_url, [bases["jpeg"]], True))
    finally:
        server.stop()


if __name__ == "__main__":
    main()
