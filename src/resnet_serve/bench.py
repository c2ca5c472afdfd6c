"""Load generator and report: a concurrency sweep against a Triton server, with Triton's own timings.

Each point runs ``concurrency`` closed-loop clients (tritonclient's asyncio gRPC or HTTP client) for
a fixed time after a warm-up, and reads Triton's statistics before and after, so the report shows
where a request's time went (queue vs compute, and the batch sizes the dynamic batcher formed), and
how busy this machine's cores were meanwhile (whether the clients, or a local server, ran short of CPU).
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from resnet_serve.client import Connection, request_inputs
from resnet_serve.contract import ENSEMBLE_NAME, ENSEMBLE_OUTPUT
from resnet_serve.errors import ResnetServeError
from resnet_serve.progress import say
from resnet_serve.runtimes import RUNTIMES
from resnet_serve.server import procfs

if TYPE_CHECKING:
    from resnet_serve.repository import RepositorySpec
    from resnet_serve.server.mps import MpsMode


class BenchError(ResnetServeError):
    """A setup cannot be benchmarked as asked."""


@dataclass
class ModelTimes:
    """One model's share of a point, from Triton's statistics (averages per request, in ms)."""

    requests: int
    executions: int
    queue_ms: float
    compute_ms: float

    @property
    def batch(self) -> float:
        return self.requests / self.executions if self.executions else 0.0


@dataclass
class Point:
    """The result of one setup at one concurrency."""

    setup: str
    concurrency: int
    images_per_request: int
    requests: int
    errors: int
    seconds: float
    img_per_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    first_error: str = ""
    models: dict[str, ModelTimes] = field(default_factory=dict)
    host_cpu_pct: float | None = None  # this machine's cores busy in the window, %; a local server's included
    client_cores: float | None = None  # cores the load clients themselves kept busy in the window (of host_cpu_pct)


class _HostCpu:
    """The share of this machine's CPU in use between two wall-clock times, read by a thread at
    each: whether the clients and a local server had cores to spare at a point."""

    def __init__(self, start: float, stop: float):
        self._readings: list[tuple[int, int] | None] = []
        self._thread = threading.Thread(target=self._read, args=(start, stop), daemon=True)
        self._thread.start()

    def _read(self, start: float, stop: float) -> None:
        for moment in (start, stop):
            time.sleep(max(0.0, moment - time.time()))
            self._readings.append(procfs.cpu_ticks())

    def percent(self) -> float | None:
        self._thread.join()
        if len(self._readings) != 2 or None in self._readings:
            return None
        (busy_start, total_start), (busy_stop, total_stop) = self._readings
        return round(100 * (busy_stop - busy_start) / max(1, total_stop - total_start), 1)


def _percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def _read_stats(raw: dict) -> dict[str, dict[str, int]]:
    result = {}
    for model in raw.get("model_stats", []):
        stats = model.get("inference_stats", {})
        result[model["name"]] = {
            "requests": int(stats.get("success", {}).get("count", 0)),
            "executions": int(model.get("execution_count", 0)),
            "queue_ns": int(stats.get("queue", {}).get("ns", 0)),
            "compute_ns": sum(
                int(stats.get(k, {}).get("ns", 0)) for k in ("compute_input", "compute_infer", "compute_output")
            ),
        }
    return result


def _stats_delta(before: dict, after: dict) -> dict[str, ModelTimes]:
    times = {}
    for name, end in after.items():
        start = before.get(name, dict.fromkeys(end, 0))
        requests = end["requests"] - start["requests"]
        if requests <= 0:
            continue
        times[name] = ModelTimes(
            requests=requests,
            executions=end["executions"] - start["executions"],
            queue_ms=(end["queue_ns"] - start["queue_ns"]) / requests / 1e6,
            compute_ms=(end["compute_ns"] - start["compute_ns"]) / requests / 1e6,
        )
    return times


class LoadGenerator:
    """Closed-loop clients sending pre-packed requests round-robin.

    With ``processes`` > 1 the clients are spread over that many processes (one asyncio loop each),
    for servers faster than one Python process can drive; their time windows are aligned on the clock.
    """

    def __init__(
        self,
        url: str,
        protocol: str,
        images: Sequence[bytes],
        images_per_request: int = 1,
        model: str = ENSEMBLE_NAME,
        processes: int = 1,
        connection: Connection | None = None,
    ):
        if protocol == "grpc":
            import tritonclient.grpc.aio as triton
        else:
            import tritonclient.http.aio as triton
        self.triton, self.url, self.protocol, self.model = triton, url, protocol, model
        self.images, self.images_per_request, self.processes = list(images), images_per_request, processes
        self.connection = connection or Connection()
        self.inputs = []
        for start in range(len(images)):
            chosen = [images[(start + k) % len(images)] for k in range(images_per_request)]
            self.inputs.append(request_inputs(triton, chosen))

    def _new_client(self):
        return self.triton.InferenceServerClient(self.url, **self.connection.client_options(self.protocol))

    async def _statistics(self, client) -> dict[str, dict[str, int]]:
        extra = {"as_json": True} if self.protocol == "grpc" else {}
        return _read_stats(await client.get_inference_statistics(**extra))

    def statistics_now(self) -> dict[str, dict[str, int]]:
        async def once() -> dict[str, dict[str, int]]:
            client = self._new_client()
            try:
                return await self._statistics(client)
            finally:
                await client.close()

        return asyncio.run(once())

    async def _client_loop(self, client, worker: int, warm_until: float, stop_at: float, latencies, errors) -> None:
        outputs = [self.triton.InferRequestedOutput(ENSEMBLE_OUTPUT)]
        index = worker
        while (start := time.time()) < stop_at:
            try:
                inputs = self.inputs[index % len(self.inputs)]
                await client.infer(self.model, inputs, outputs=outputs, headers=self.connection.headers or None)
                if start >= warm_until:
                    latencies.append((time.time() - start) * 1000)
            except Exception as exc:  # every failed request is counted, the first one reported
                if start >= warm_until:
                    errors.append(str(exc))
            index += 1

    async def measure(self, concurrency: int, warm_until: float, stop_at: float, with_stats: bool = False):
        """Latencies (ms) and errors of requests started in [warm_until, stop_at), the CPU seconds this
        process spent per second from warm_until to the last answer (cores), and stats if asked."""
        client = self._new_client()
        latencies: list[float] = []
        errors: list[str] = []
        stats: list[dict] = []
        started: list[tuple[float, float]] = []

        async def at_warm_until() -> None:
            await asyncio.sleep(max(0.0, warm_until - time.time()))
            started.append((time.time(), time.process_time()))
            if with_stats:
                stats.append(await self._statistics(client))

        try:
            loops = [self._client_loop(client, w, warm_until, stop_at, latencies, errors) for w in range(concurrency)]
            await asyncio.gather(*loops, at_warm_until())
            (wall, cpu), ended = started[0], (time.time(), time.process_time())
            if with_stats:
                stats.append(await self._statistics(client))
        finally:
            await client.close()
        return latencies, errors, stats, (ended[1] - cpu) / max(1e-9, ended[0] - wall)

    def point(self, setup: str, concurrency: int, seconds: float, warmup_s: float) -> Point:
        processes = max(1, min(self.processes, concurrency))
        warm_until = time.time() + warmup_s + (3.0 if processes > 1 else 0.0)  # spawned clients start first
        stop_at = warm_until + seconds
        host_cpu = _HostCpu(warm_until, stop_at)
        if processes == 1:
            measured = asyncio.run(self.measure(concurrency, warm_until, stop_at, True))
            latencies, errors, (before, after), client_cores = measured
        else:
            measured = self._measure_in_processes(processes, concurrency, warm_until, stop_at)
            latencies, errors, (before, after), client_cores = measured
        return Point(
            setup=setup,
            concurrency=concurrency,
            images_per_request=self.images_per_request,
            requests=len(latencies),
            errors=len(errors),
            seconds=round(seconds, 3),
            img_per_s=len(latencies) * self.images_per_request / seconds,
            p50_ms=_percentile(latencies, 50),
            p90_ms=_percentile(latencies, 90),
            p99_ms=_percentile(latencies, 99),
            first_error=errors[0] if errors else "",
            models=_stats_delta(before, after),
            host_cpu_pct=host_cpu.percent(),
            client_cores=round(client_cores, 2),
        )

    def _measure_in_processes(self, processes: int, concurrency: int, warm_until: float, stop_at: float):
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        shares = [concurrency // processes + (1 if k < concurrency % processes else 0) for k in range(processes)]
        arguments = (self.url, self.protocol, self.images, self.images_per_request, self.model, self.connection)
        context = multiprocessing.get_context("spawn")  # no fork of a process holding gRPC state
        with ProcessPoolExecutor(processes, mp_context=context) as pool:
            futures = [pool.submit(_measure_worker, *arguments, share, warm_until, stop_at) for share in shares]
            time.sleep(max(0.0, warm_until - time.time()))
            before = self.statistics_now()
            results = [future.result() for future in futures]
        after = self.statistics_now()
        latencies = [ms for result in results for ms in result[0]]
        errors = [e for result in results for e in result[1]]
        return latencies, errors, (before, after), sum(result[2] for result in results)


def _measure_worker(url, protocol, images, images_per_request, model, connection, concurrency, warm_until, stop_at):
    generator = LoadGenerator(url, protocol, images, images_per_request, model, connection=connection)
    latencies, errors, _, cores = asyncio.run(generator.measure(concurrency, warm_until, stop_at))
    return latencies, errors, cores


def sweep(
    generator: LoadGenerator,
    setup: str,
    concurrencies: Sequence[int],
    seconds: float,
    warmup_s: float,
    progress: bool = True,
) -> list[Point]:
    """One point per concurrency, with a line on stderr as each one ends."""
    points = []
    for number, concurrency in enumerate(concurrencies, 1):
        point = generator.point(setup, concurrency, seconds, warmup_s)
        points.append(point)
        if progress:
            say(f"[{setup}] {number}/{len(concurrencies)}: concurrency {concurrency}, {point.img_per_s:.1f} img/s, "
                f"p99 {point.p99_ms:.1f} ms, {point.errors} errors")  # fmt: skip
    return points


def in_process_ceiling(
    images: Sequence[bytes], onnx_model: Path, seconds: float, batch: int = 8, threads: int = 0, classify=None
) -> Point:
    """Decode + preprocess (as the model's card says) + classifier in this process with no server:
    what serving can approach.

    As served, the two overlap on the same cores: the next batch is decoded (on ``threads`` threads,
    0: every core) while the classifier runs this one. Latencies are the pipeline's period per batch
    (waiting for the decoded batch, then classifying it), so not comparable with older figures that
    decoded and classified one after the other. ``classify`` (preprocessed batch -> logits)
    defaults to ONNX Runtime.
    """
    from resnet_serve.host import available_cores
    from resnet_serve.images.preprocess import PreprocessOptions, preprocess_batch
    from resnet_serve.model_card import card_for
    from resnet_serve.ort_session import OrtClassifier, create_session

    classify = classify or OrtClassifier(create_session(onnx_model, intra_op_threads=threads))
    options = PreprocessOptions(**card_for(onnx_model).preprocess_fields())  # as the served model is fed
    done, latencies = 0, []
    with ThreadPoolExecutor(threads or available_cores()) as pool, ThreadPoolExecutor(1) as producer:

        def prepared(first: int):
            return preprocess_batch([images[(first + k) % len(images)] for k in range(batch)], options, pool)[0]

        classify(prepared(0))  # warm-up
        start = time.perf_counter()
        pending = producer.submit(prepared, 0)
        while time.perf_counter() - start < seconds:
            began = time.perf_counter()
            ready, pending = pending.result(), producer.submit(prepared, done + batch)
            classify(ready)
            latencies.append((time.perf_counter() - began) * 1000)
            done += batch
        elapsed = time.perf_counter() - start  # the producer, shut down first, finishes its last batch
    return Point(
        setup="in-process",
        concurrency=1,
        images_per_request=batch,
        requests=len(latencies),
        errors=0,
        seconds=round(elapsed, 3),
        img_per_s=done / elapsed,
        p50_ms=_percentile(latencies, 50),
        p90_ms=_percentile(latencies, 90),
        p99_ms=_percentile(latencies, 99),
    )


def table(points: Sequence[Point]) -> str:
    """A plain-text table, one row per point, with Triton's per-model times."""
    header = f"{'setup':<14} {'conc':>4} {'img/req':>7} {'img/s':>8} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8}"
    lines = [f"{header} {'errors':>6} {'cpu %':>5} {'client':>6}  server: queue / compute ms per request, mean batch"]
    for p in points:
        # an ensemble's times are its steps' sums; the fused profile's one model has the ensemble's name
        steps = {name: t for name, t in p.models.items() if name != ENSEMBLE_NAME} or p.models
        server = "  ".join(f"{name}: {t.queue_ms:.1f}/{t.compute_ms:.1f} b{t.batch:.1f}" for name, t in steps.items())
        cpu = "-" if p.host_cpu_pct is None else f"{p.host_cpu_pct:.0f}"
        client = "-" if p.client_cores is None else f"{p.client_cores:.2f}"
        lines.append(
            f"{p.setup:<14} {p.concurrency:>4} {p.images_per_request:>7} {p.img_per_s:>8.1f} {p.p50_ms:>8.1f} "
            f"{p.p90_ms:>8.1f} {p.p99_ms:>8.1f} {p.errors:>6} {cpu:>5} {client:>6}  {server}"
        )
    return "\n".join(lines)


def ratios(points: Sequence[Point], baseline: str) -> str:
    """Each setup's best throughput over the baseline setup's best, measured in the same run."""
    best: dict[str, float] = {}
    for p in points:
        best[p.setup] = max(best.get(p.setup, 0.0), p.img_per_s)
    if baseline not in best or not best[baseline]:
        return ""
    return "\n".join(
        f"{setup:<14} best {value:8.1f} img/s = {value / best[baseline]:5.2f}x {baseline}"
        for setup, value in best.items()
    )


def to_json(points: Sequence[Point]) -> str:
    return json.dumps([asdict(p) for p in points], indent=2)


def to_csv(points: Sequence[Point]) -> str:
    buffer = io.StringIO()
    columns = [f for f in Point.__dataclass_fields__ if f != "models"]
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    for p in points:
        writer.writerow({k: v for k, v in asdict(p).items() if k in columns})
    return buffer.getvalue()


def plot(points: Sequence[Point], path: Path, title: str = "resnet-serve bench") -> Path:
    """Throughput and p99 latency against concurrency, one line per setup (needs matplotlib)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for setup in dict.fromkeys(p.setup for p in points):
        mine = [p for p in points if p.setup == setup]
        if len(mine) == 1 and setup == "in-process":
            left.axhline(mine[0].img_per_s, linestyle="--", color="gray", label=setup)
            continue
        x = [p.concurrency for p in mine]
        left.plot(x, [p.img_per_s for p in mine], marker="o", label=setup)
        right.plot(x, [p.p99_ms for p in mine], marker="o", label=setup)
    for axis, label in ((left, "images / s"), (right, "p99 latency (ms)")):
        axis.set_xscale("log", base=2)
        axis.set_xlabel("concurrent clients")
        axis.set_ylabel(label)
        axis.grid(True, alpha=0.3)
        axis.legend()
    figure.suptitle(title)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def synthetic_photos(
    sizes: Sequence[tuple[int, int]] = ((500, 375), (1024, 768), (2048, 1536), (3264, 2448)),
) -> list[bytes]:
    """A default mix of JPEG sizes: smooth colour fields with fine noise, so they compress like photos."""
    from PIL import Image

    rng = np.random.default_rng(0)
    photos = []
    for width, height in sizes:
        y, x = np.mgrid[0:height, 0:width].astype(np.float32)
        phase = rng.uniform(0, 6.28, 3)
        channels = [127 + 100 * np.sin(x / (40 + 30 * c) + y / (55 + 20 * c) + phase[c]) for c in range(3)]
        pixels = np.stack(channels, axis=-1) + rng.normal(0, 12, (height, width, 3))
        buffer = io.BytesIO()
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=90)
        photos.append(buffer.getvalue())
    return photos


SERVER_SETUPS = ("ours", "fused", "int8", "ort-fp32", "seed", "gpu", "fused-gpu", "seed-gpu")
SETUPS = (*SERVER_SETUPS, "in-process")


@dataclass(frozen=True, kw_only=True)
class Sweep:
    """How each setup is loaded: client counts, time per point, request size, protocol, client processes."""

    concurrencies: Sequence[int] = (1, 2, 4, 8, 16, 32)
    seconds: float = 10.0
    warmup_s: float = 2.0
    images_per_request: int = 1
    protocol: str = "grpc"
    client_processes: int = 1


@dataclass(frozen=True, kw_only=True)
class ModelFiles:
    """The models the setups serve: fp32 ONNX, int8 ONNX, and the torch state_dict for the GPU."""

    onnx: Path
    int8_onnx: Path
    torch_weights: Path


def setup_spec(setup: str, ours: RepositorySpec, files: ModelFiles) -> RepositorySpec:
    """The repository spec of a named setup, derived from ``ours`` (the user's repository options)."""
    torch = {"model_file": files.torch_weights, "classifier": "torch", "device": "cuda"}
    asked = files.int8_onnx if ours.precision == "int8" else files.onnx  # the model of the precision asked
    specs = {
        "ours": replace(ours, model_file=files.onnx),
        "fused": replace(ours, model_file=asked, classifier="openvino", profile="fused"),  # one CPU model
        "int8": replace(ours, model_file=files.int8_onnx, precision="int8"),
        "ort-fp32": replace(ours, model_file=files.onnx, classifier="ort", precision="fp32"),
        # The seed example's classifier: fp32 ONNX on ONNX Runtime.
        "seed": replace(ours, model_file=files.onnx, profile="seed", classifier="ort", precision="fp32"),
        "gpu": replace(ours, **torch, profile="ours"),  # the two-step ensemble
        "fused-gpu": replace(ours, **torch, profile="fused"),
        "seed-gpu": replace(ours, **torch, profile="seed"),
        "in-process": replace(ours, model_file=asked),  # no server
    }
    return specs[setup]


def serve_and_sweep(
    setup: str,
    spec: RepositorySpec,
    images: Sequence[bytes],
    sweep_settings: Sweep,
    workdir: Path,
    binary=None,
    mps: MpsMode = "auto",
    cuda_memory_pool_bytes: int | None = None,
) -> list[Point]:
    """Write ``spec``'s repository, start tritonserver on free ports (``mps``: server/mps.py), sweep, stop.
    ``cuda_memory_pool_bytes``: per GPU (None: serve's default for the repository)."""
    from resnet_serve.gpu_placement import tensor_pool_bytes
    from resnet_serve.repository import read_marker, write_repository
    from resnet_serve.server import ServerSettings, TritonServer

    repository = write_repository(workdir / setup / "model_repository", spec)
    pool = tensor_pool_bytes(spec.passes_gpu_tensors) if cuda_memory_pool_bytes is None else cuda_memory_pool_bytes
    gpus = read_marker(repository, spec.name).get("gpus", [])
    settings = ServerSettings.on_free_ports(
        repository.resolve(), models=(spec.name,), cuda_memory_pool_bytes=pool, gpus=gpus, mps=mps
    )
    log = (workdir / setup / "tritonserver.log").resolve()
    with TritonServer(settings, binary=binary, log_path=log) as server:
        if server.gpu_sharing:
            say(f"{setup}: {server.gpu_sharing}")
        url = server.grpc_url if sweep_settings.protocol == "grpc" else server.http_url
        generator = LoadGenerator(
            url,
            sweep_settings.protocol,
            images,
            sweep_settings.images_per_request,
            model=spec.name,
            processes=sweep_settings.client_processes,
        )
        return sweep(generator, setup, sweep_settings.concurrencies, sweep_settings.seconds, sweep_settings.warmup_s)


def run_setups(
    setups: Sequence[str],
    ours: RepositorySpec,
    files: ModelFiles,
    images: Sequence[bytes],
    sweep_settings: Sweep,
    workdir: Path,
    binary=None,
    in_process_batch: int = 8,
) -> list[Point]:
    """Each setup in turn on the same server binary and images: serve it, sweep it, stop it."""
    points: list[Point] = []
    for setup in setups:
        spec = setup_spec(setup, ours, files)
        if not Path(spec.model_file).is_file():
            raise BenchError(
                f"setup {setup} needs {spec.model_file}; make it with `resnet-serve export` (--int8 for int8)"
            )
        if setup == "in-process":
            classifier = RUNTIMES[ours.classifier].in_process(spec)
            say(f"[in-process] decode + preprocess + {ours.classifier} {ours.precision}, batch {in_process_batch} ...")
            seconds = sweep_settings.seconds
            points.append(in_process_ceiling(images, spec.model_file, seconds, in_process_batch, classify=classifier))
            continue
        points += serve_and_sweep(setup, spec, images, sweep_settings, workdir, binary)
    return points
