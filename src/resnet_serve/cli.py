"""The ``resnet-serve`` command line: demo, export, engine, repo, serve, classify, bench."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from resnet_serve.progress import say, step, warn

DEFAULT_WORKDIR = Path("build")
DEFAULT_ONNX = DEFAULT_WORKDIR / "resnet50.onnx"
DEFAULT_INT8 = DEFAULT_WORKDIR / "resnet50.int8.onnx"
DEFAULT_TORCH = DEFAULT_WORKDIR / "resnet50.pt"
DEFAULT_REPOSITORY = DEFAULT_WORKDIR / "model_repository"


def _add_weights_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--weights",
        metavar="FILE",
        help="ResNet-50 state_dict or torchvision checkpoint (default: $RESNET_SERVE_WEIGHTS, else torchvision's "
        "IMAGENET1K_V1, downloaded once into torchvision's cache)",
    )
    group.add_argument(
        "--random-weights",
        action="store_true",
        help="a fixed-seed random ResNet-50 (for tests and offline machines: classes are meaningless)",
    )


def _add_server_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--server", metavar="PATH", help="tritonserver binary (default: PATH, then the nvidia-pytriton wheel)"
    )
    parser.add_argument(
        "--backend-directory", metavar="DIR", help="Triton backends directory (default: beside the binary)"
    )


def _add_repository_options(parser: argparse.ArgumentParser) -> None:
    """How the repository's steps batch, thread and guard their input (repo and bench)."""
    from dataclasses import fields

    from resnet_serve.preprocess import PreprocessOptions
    from resnet_serve.repository import RepositorySpec

    defaults = PreprocessOptions()
    spec = {f.name: f.default for f in fields(RepositorySpec)}
    parser.add_argument(
        "--device",
        choices=["cpu", "cuda"],
        default="cpu",
        help="cuda: nvJPEG preprocess and the PyTorch classifier on the GPU, tensors passed by DLPack",
    )
    parser.add_argument("--dtype", choices=["fp16", "fp32"], default="fp16", help="GPU classifier precision")
    parser.add_argument("--no-cuda-graphs", action="store_true", help="run the GPU classifier eagerly")
    parser.add_argument("--max-batch-size", type=int, default=spec["max_batch_size"])
    parser.add_argument(
        "--max-queue-delay-us",
        type=int,
        default=spec["max_queue_delay_us"],
        help=f"dynamic batcher wait (default {spec['max_queue_delay_us']})",
    )
    parser.add_argument(
        "--max-queue-size",
        type=int,
        default=spec["max_queue_size"],
        help=f"requests queued before new ones are refused (default {spec['max_queue_size']})",
    )
    parser.add_argument("--preprocess-instances", type=int, default=spec["preprocess_instances"])
    parser.add_argument(
        "--preprocess-threads",
        type=int,
        default=spec["preprocess_threads"],
        help="decode threads per instance (0: all cores)",
    )
    parser.add_argument("--classifier-instances", type=int, default=spec["classifier_instances"])
    parser.add_argument(
        "--classifier-threads",
        type=int,
        default=spec["classifier_threads"],
        help="ONNX Runtime threads (0: ORT's choice)",
    )
    parser.add_argument(
        "--classifier-run-batch",
        type=int,
        default=spec["classifier_run_batch"],
        help=f"images per ONNX Runtime call, bounding its memory (default {spec['classifier_run_batch']})",
    )
    parser.add_argument(
        "--max-image-bytes", type=int, default=defaults.max_image_bytes, help="largest encoded image accepted"
    )
    parser.add_argument(
        "--max-request-bytes", type=int, default=defaults.max_request_bytes, help="largest request tensor accepted"
    )
    parser.add_argument(
        "--max-pixels", type=int, default=defaults.max_pixels, help="largest decoded image (width*height)"
    )
    parser.add_argument(
        "--no-exif-transpose",
        action="store_true",
        help="ignore EXIF orientation (torchvision's behaviour); default rotates as phones expect",
    )
    parser.add_argument(
        "--no-jpeg-draft",
        action="store_true",
        help="always decode JPEGs at full size (exact torchvision numbers, slower on big photos)",
    )


def _add_connection_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ssl", action="store_true", help="TLS to the server (gRPC or HTTPS)")
    parser.add_argument("--root-certificates", metavar="PEM", help="CA bundle for --ssl (gRPC)")
    parser.add_argument(
        "--header",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="sent with every request, e.g. 'Authorization=Bearer TOKEN' (repeatable)",
    )


def _connection(args: argparse.Namespace):
    from resnet_serve.client import Connection
    from resnet_serve.errors import ResnetServeError

    if bad := [item for item in args.header if "=" not in item]:
        raise ResnetServeError(f"--header needs KEY=VALUE, got {bad[0]!r}")
    headers = dict(item.split("=", 1) for item in args.header)
    return Connection(ssl=args.ssl, root_certificates=args.root_certificates, headers=headers)


def _add_client_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--top-k", type=int, default=5, help="classes to show per image (default 5)")
    parser.add_argument("--json", action="store_true", help="print results as JSON")


def cmd_export(args: argparse.Namespace) -> int:
    from resnet_serve.build import export_checked, export_int8, load_model
    from resnet_serve.client import read_images

    if args.int8 and not args.calibration:
        say("error: --int8 needs --calibration IMG_OR_DIR (representative images, e.g. a few hundred photos)")
        return 2
    output = Path(args.output)
    loaded = load_model(args.weights, args.random_weights, fallback_to_random=False)
    export_checked(loaded, output, read_images(args.check_image), args.opset)
    print(output)
    if args.int8:
        print(export_int8(output, read_images(args.calibration), read_images(args.report)))
    return 0


def cmd_engine(args: argparse.Namespace) -> int:
    from resnet_serve.engine import EngineSpec, build_plan

    spec = EngineSpec(args.precision == "fp16", args.min_batch, args.opt_batch, args.max_batch, args.workspace_mb << 20)
    with step(f"Building TensorRT plan ({args.precision}, batch {args.min_batch}/{args.opt_batch}/{args.max_batch})"):
        build_plan(Path(args.onnx), Path(args.output), spec)
    print(args.output)
    return 0


def _preprocess_options(args: argparse.Namespace):
    from resnet_serve.preprocess import PreprocessOptions

    return PreprocessOptions(
        max_image_bytes=args.max_image_bytes,
        max_request_bytes=args.max_request_bytes,
        max_pixels=args.max_pixels,
        exif_transpose=not args.no_exif_transpose,
        jpeg_draft=not args.no_jpeg_draft,
    )


def _repository_spec(args: argparse.Namespace):
    from resnet_serve.repository import RepositorySpec

    gpu = args.device == "cuda"
    default = "onnx" if getattr(args, "target", "bundled") == "ngc" else "ort"
    classifier = args.classifier or ("trt" if args.plan else "torch" if gpu else default)
    if classifier == "torch":
        model_file = args.torch_weights
    else:
        model_file = args.plan or (DEFAULT_INT8 if args.int8 else args.onnx)
    return RepositorySpec(
        model_file=Path(model_file),
        classifier=classifier,
        device=args.device,
        dtype=args.dtype,
        cuda_graphs=not args.no_cuda_graphs,
        profile=args.profile,
        max_batch_size=args.max_batch_size,
        preprocess=_preprocess_options(args),
        preprocess_instances=args.preprocess_instances,
        preprocess_threads=args.preprocess_threads,
        classifier_instances=args.classifier_instances,
        classifier_threads=args.classifier_threads,
        max_queue_delay_us=args.max_queue_delay_us,
        max_queue_size=args.max_queue_size,
        classifier_run_batch=args.classifier_run_batch,
    )


def cmd_repo(args: argparse.Namespace) -> int:
    from resnet_serve.repository import write_repository

    spec = _repository_spec(args)
    with step(f"Writing model repository {args.output} (classifier {spec.classifier_name})"):
        write_repository(args.output, spec)
    print(args.output)
    return 0


def _run_until_signal(server) -> int:
    """Serve (restarting the server if a stub or the server dies) until SIGINT/SIGTERM; then stop."""
    from resnet_serve.server import supervise

    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        status = supervise(server, stop, say)
        if stop.is_set():
            say("Draining in-flight requests, then stopping tritonserver ...")
            if not server.wait_idle(timeout=30.0):
                say("requests still arriving after 30 s: stopping anyway")
        return status
    finally:
        server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def cmd_serve(args: argparse.Namespace) -> int:
    from resnet_serve.repository import ENSEMBLE_NAME, read_marker
    from resnet_serve.server import GPU_TENSOR_POOL_BYTES, ServerSettings, TritonServer, find_server

    host = "0.0.0.0" if args.public else args.host
    if host not in ("127.0.0.1", "localhost", "::1"):
        warn(f"listening on {host}: anyone who can reach this machine can use the server")
    repository = Path(args.repository)
    if not (repository / ENSEMBLE_NAME / "config.pbtxt").is_file():
        say(f"error: {repository} holds no model repository; run `resnet-serve repo` (or `resnet-serve demo`) first")
        return 2
    if args.cuda_memory_pool_mb is not None:
        pool_bytes = args.cuda_memory_pool_mb << 20
    else:
        pool_bytes = GPU_TENSOR_POOL_BYTES if read_marker(repository).get("gpu_tensors") else 0
    settings = ServerSettings(
        repository.resolve(), host, args.http_port, args.grpc_port, args.metrics_port, args.log_verbose, pool_bytes,
        model_control_key=args.model_control_key, extra_args=args.triton_args,
    )  # fmt: skip
    server = TritonServer(settings, find_server(args.server, args.backend_directory), Path(args.log_file).resolve())
    with step(f"Starting tritonserver ({server.binary.executable})"):
        server.start(args.timeout)
    say(f"Ready. gRPC {server.grpc_url}  HTTP {server.http_url}  metrics {server.metrics_url}")
    say(f"Server log: {server.log_path}. Ctrl-C stops it.")
    return _run_until_signal(server)


def _print_results(paths: Sequence[str], results, latency_ms: float, as_json: bool) -> None:
    if as_json:
        print(
            json.dumps(
                {
                    "latency_ms": round(latency_ms, 3),
                    "images": [
                        {"image": str(path), "top": [p.__dict__ for p in predictions]}
                        for path, predictions in zip(paths, results, strict=True)
                    ],
                },
                indent=2,
            )
        )
        return
    for path, predictions in zip(paths, results, strict=True):
        print(f"{path}:")
        for rank, p in enumerate(predictions, 1):
            print(f"  {rank}. {p.label:<32} {p.probability:7.2%}  (class {p.index}, logit {p.logit:.3f})")
    print(f"{len(paths)} image(s) in one request: {latency_ms:.1f} ms")


def cmd_classify(args: argparse.Namespace) -> int:
    from resnet_serve.client import TritonClassifier, image_paths, read_images

    paths = image_paths(args.images)
    with TritonClassifier(args.url, args.protocol, timeout_s=args.timeout, connection=_connection(args)) as client:
        results, latency_ms = client.classify(read_images(paths), args.top_k)
    _print_results([str(path) for path in paths], results, latency_ms, args.json)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from resnet_serve.build import ensure_onnx
    from resnet_serve.client import TritonClassifier, read_images
    from resnet_serve.repository import RepositorySpec, write_repository
    from resnet_serve.server import ServerSettings, TritonServer, find_server

    images = read_images(args.images)
    workdir = Path(args.workdir)
    onnx = ensure_onnx(workdir / "resnet50.onnx", args.weights, args.random_weights, images, fallback_to_random=True)
    repository = workdir / "model_repository"
    with step(f"Writing model repository {repository}"):
        write_repository(repository, RepositorySpec(model_file=onnx))
    settings = ServerSettings.on_free_ports(repository.resolve())
    server = TritonServer(
        settings, find_server(args.server, args.backend_directory), (workdir / "tritonserver.log").resolve()
    )
    with step(f"Starting tritonserver on 127.0.0.1 (log: {server.log_path})"):
        server.start()
    try:
        with TritonClassifier(server.grpc_url, "grpc") as client:
            client.logits(images[:1])  # first request warms the models
            results, latency_ms = client.classify(images, args.top_k)
        _print_results(args.images, results, latency_ms, args.json)
    finally:
        with step("Stopping tritonserver"):
            server.stop()
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from resnet_serve import bench
    from resnet_serve.client import read_images
    from resnet_serve.server import find_server

    images = read_images(args.images) if args.images else bench.synthetic_photos()
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    points: list[bench.Point] = []
    if args.url:
        generator = bench.LoadGenerator(
            args.url, args.protocol, images, args.images_per_request, processes=args.client_processes,
            connection=_connection(args),
        )  # fmt: skip
        points += bench.sweep(generator, "server", concurrencies, args.seconds, args.warmup)
    setups = args.setup or ([] if args.url else ["ours", "seed", "in-process"])
    binary = find_server(args.server, args.backend_directory) if set(setups) & set(bench.SERVER_SETUPS) else None
    ours = _repository_spec(args)
    for setup in setups:
        if setup == "in-process":
            say(f"[in-process] decode + preprocess + ONNX Runtime, batch {args.in_process_batch}, no server ...")
            points.append(bench.in_process_ceiling(images, Path(args.onnx), args.seconds, args.in_process_batch))
            continue
        spec = bench.setup_spec(setup, ours, Path(args.onnx), Path(args.int8_onnx), Path(args.torch_weights))
        if not Path(spec.model_file).is_file():
            say(f"error: setup {setup} needs {spec.model_file}; make it with `resnet-serve export` (--int8 for int8)")
            return 2
        points += bench.serve_and_sweep(
            setup, spec, images, concurrencies, args.seconds, args.warmup, args.images_per_request,
            args.protocol, Path(args.workdir), binary, args.client_processes,
        )  # fmt: skip
    print(bench.table(points))
    baseline = "seed" if "seed" in setups else points[0].setup
    print(bench.ratios(points, baseline))
    for path, render in ((args.json, bench.to_json), (args.csv, bench.to_csv)):
        if path:
            Path(path).write_text(render(points))
    if args.plot:
        say(f"Plot: {bench.plot(points, Path(args.plot))}")
    return 1 if any(p.errors for p in points) else 0


def build_parser() -> argparse.ArgumentParser:
    from resnet_serve.bench import SETUPS
    from resnet_serve.repository import CLASSIFIERS, PROFILES

    parser = argparse.ArgumentParser(
        prog="resnet-serve",
        description="Serve ImageNet ResNet-50 classification on NVIDIA Triton (the python_backend "
        "'preprocessing' ensemble): build, serve, classify.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser(
        "demo",
        help="build what is missing, serve, classify images, stop",
        description="The main job in one command: weights -> ONNX -> model repository -> "
        "tritonserver -> top-k for each image -> stop. Offline, falls back to random weights "
        "with a warning.",
    )
    demo.add_argument("images", nargs="+", metavar="IMAGE", help="image files to classify")
    demo.add_argument("--workdir", default=str(DEFAULT_WORKDIR), help="where the ONNX model, repository and log go")
    _add_weights_options(demo)
    _add_server_options(demo)
    _add_client_options(demo)
    demo.set_defaults(handler=cmd_demo)

    export = commands.add_parser(
        "export",
        help="export ResNet-50 to ONNX and check it against torch",
        description="torch ResNet-50 -> ONNX (input 'input' [N,3,224,224], output 'output' "
        "[N,1000], dynamic N); then ONNX Runtime is checked against torch (max abs logit "
        "difference printed, failure above 1e-3).",
    )
    export.add_argument(
        "--output", "-o", default=str(DEFAULT_ONNX), help=f"ONNX file to write (default {DEFAULT_ONNX})"
    )
    export.add_argument("--opset", type=int, default=18, help="ONNX opset (default 18)")
    export.add_argument(
        "--check-image",
        action="append",
        default=[],
        metavar="IMG",
        help="real image(s) for the parity check (repeatable; default: a fixed random batch)",
    )
    export.add_argument(
        "--int8", action="store_true", help="also write <output>.int8.onnx by ONNX Runtime static QDQ quantization"
    )
    export.add_argument(
        "--calibration", nargs="+", default=[], metavar="IMG", help="images or directories to calibrate int8 on"
    )
    export.add_argument(
        "--report", nargs="+", default=[], metavar="IMG", help="print int8's agreement with fp32 on these images"
    )
    _add_weights_options(export)
    export.set_defaults(handler=cmd_export)

    engine = commands.add_parser(
        "engine",
        help="build a TensorRT plan from the ONNX model (needs TensorRT)",
        description="ONNX -> TensorRT plan with the tensorrt Python API, as the seed's trtexec command: fp16 and "
        "an optimisation profile over the batch axis. Build it on the GPU and TensorRT version that will serve it; "
        "then `resnet-serve repo --plan FILE` writes resnet50_trt.",
    )
    engine.add_argument("--onnx", default=str(DEFAULT_ONNX), help=f"ONNX model (default {DEFAULT_ONNX})")
    engine.add_argument("--output", "-o", default=str(DEFAULT_WORKDIR / "resnet50.plan"))
    engine.add_argument("--precision", choices=["fp16", "fp32"], default="fp16")
    engine.add_argument("--min-batch", type=int, default=1)
    engine.add_argument("--opt-batch", type=int, default=1)
    engine.add_argument("--max-batch", type=int, default=256)
    engine.add_argument("--workspace-mb", type=int, default=4096)
    engine.set_defaults(handler=cmd_engine)

    repo = commands.add_parser(
        "repo",
        help="write the Triton model repository",
        description="Write the ensemble (preprocess -> classifier) as a Triton model "
        "repository. Rewrites a repository it wrote; refuses other non-empty directories.",
    )
    repo.add_argument(
        "--output", "-o", default=str(DEFAULT_REPOSITORY), help=f"directory (default {DEFAULT_REPOSITORY})"
    )
    source = repo.add_mutually_exclusive_group()
    source.add_argument("--onnx", default=str(DEFAULT_ONNX), help=f"ONNX model (default {DEFAULT_ONNX})")
    source.add_argument("--plan", help="TensorRT plan (selects the resnet50_trt classifier)")
    source.add_argument(
        "--int8", action="store_true", help=f"serve the int8 model from `export --int8` ({DEFAULT_INT8})"
    )
    repo.add_argument(
        "--torch-weights", default=str(DEFAULT_TORCH), help=f"state_dict for --device cuda (default {DEFAULT_TORCH})"
    )
    repo.add_argument(
        "--target",
        choices=["bundled", "ngc"],
        default="bundled",
        help="bundled: the PyPI tritonserver (classifier on the Python backend); ngc: NVIDIA's tritonserver image "
        "(native onnxruntime backend, or tensorrt_plan with --plan)",
    )
    repo.add_argument(
        "--profile", choices=sorted(PROFILES), default="ours", help="; ".join(f"{k}: {v}" for k, v in PROFILES.items())
    )
    repo.add_argument(
        "--classifier",
        choices=sorted(CLASSIFIERS),
        help="; ".join(f"{k}: {v[0]}, {v[2]}" for k, v in CLASSIFIERS.items()) + " (default: ort, trt with --plan)",
    )
    _add_repository_options(repo)
    repo.set_defaults(handler=cmd_repo)

    serve = commands.add_parser(
        "serve",
        help="run tritonserver on a repository until Ctrl-C",
        description="Start tritonserver on the repository and keep it running; Ctrl-C or "
        "SIGTERM drains in-flight requests and stops it.",
    )
    serve.add_argument(
        "--repository", default=str(DEFAULT_REPOSITORY), help=f"model repository (default {DEFAULT_REPOSITORY})"
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--public", action="store_true", help="listen on all interfaces (0.0.0.0), with a warning")
    serve.add_argument("--http-port", type=int, default=8000)
    serve.add_argument("--grpc-port", type=int, default=8001)
    serve.add_argument("--metrics-port", type=int, default=8002)
    serve.add_argument("--log-file", default=str(DEFAULT_WORKDIR / "tritonserver.log"))
    serve.add_argument("--log-verbose", type=int, default=0)
    serve.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for readiness")
    serve.add_argument(
        "--model-control-key",
        metavar="HEADER=VALUE",
        help="allow model load/unload (Triton's explicit mode) to requests carrying this header; default: off",
    )
    serve.add_argument(
        "triton_args",
        nargs="*",
        metavar="-- TRITON_ARG",
        help="after --, more tritonserver arguments (e.g. -- --grpc-use-ssl=true --grpc-server-cert=...)",
    )
    serve.add_argument(
        "--cuda-memory-pool-mb",
        type=int,
        help="GPU memory pool for tensors passed between steps (default: 1024 for --device cuda repositories, else 0)",
    )
    _add_server_options(serve)
    serve.set_defaults(handler=cmd_serve)

    classify = commands.add_parser(
        "classify",
        help="classify images on a running server",
        description="Send the images in ONE request (UINT8 [N, L], zero-padded) to "
        "ensemble_python_resnet50 and print the top-k classes.",
    )
    classify.add_argument("images", nargs="+", metavar="IMAGE")
    classify.add_argument("--url", help="server address (default 127.0.0.1:8001 for grpc, :8000 for http)")
    classify.add_argument("--protocol", choices=["grpc", "http"], default="grpc")
    classify.add_argument("--timeout", type=float, default=60.0, help="request timeout in seconds")
    _add_client_options(classify)
    _add_connection_options(classify)
    classify.set_defaults(handler=cmd_classify)

    bench = commands.add_parser(
        "bench",
        help="load-test setups side by side: ours, int8, the seed, the in-process ceiling",
        description="Concurrency sweep with tritonclient's asyncio client against each setup, one after "
        "another on the same server binary and images, so the ratios are honest. Reports img/s, "
        "p50/p90/p99 latency, errors, and Triton's queue/compute times and batch sizes per model.",
    )
    bench.add_argument("images", nargs="*", metavar="IMAGE", help="images or directories (default: a mix of sizes)")
    bench.add_argument("--setup", action="append", choices=SETUPS, help="repeatable (default: ours, seed, in-process)")
    bench.add_argument("--url", help="also (or only) bench a server already running here, as setup 'server'")
    bench.add_argument("--protocol", choices=["grpc", "http"], default="grpc")
    bench.add_argument("--concurrency", default="1,2,4,8,16,32", help="comma-separated client counts")
    bench.add_argument("--seconds", type=float, default=10.0, help="measured time per point")
    bench.add_argument("--warmup", type=float, default=2.0, help="unmeasured time before each point")
    bench.add_argument("--images-per-request", type=int, default=1)
    bench.add_argument("--in-process-batch", type=int, default=8, help="batch of the in-process ceiling")
    bench.add_argument("--onnx", default=str(DEFAULT_ONNX), help=f"fp32 model (default {DEFAULT_ONNX})")
    bench.add_argument("--int8-onnx", default=str(DEFAULT_INT8), help=f"int8 model (default {DEFAULT_INT8})")
    bench.add_argument(
        "--torch-weights", default=str(DEFAULT_TORCH), help=f"state_dict for the GPU setups (default {DEFAULT_TORCH})"
    )
    bench.add_argument("--client-processes", type=int, default=1, help="spread the clients over N processes")
    bench.add_argument("--workdir", default=str(DEFAULT_WORKDIR / "bench"), help="repositories and server logs")
    bench.add_argument("--json", metavar="FILE", help="write every point as JSON")
    bench.add_argument("--csv", metavar="FILE", help="write every point as CSV")
    bench.add_argument("--plot", metavar="PNG", help="plot img/s and p99 against concurrency (needs matplotlib)")
    _add_repository_options(bench)
    _add_server_options(bench)
    _add_connection_options(bench)
    bench.set_defaults(handler=cmd_bench, plan=None, int8=False, classifier="ort", profile="ours")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        say("interrupted")
        return 130
    except Exception as exc:
        if _is_expected(exc):
            say(f"error: {exc}")
            return 1
        raise


def _is_expected(exc: Exception) -> bool:
    """Errors with a message meant for the user (printed without a traceback)."""
    from tritonclient.utils import InferenceServerException

    from resnet_serve.errors import ResnetServeError

    return isinstance(exc, (ResnetServeError, FileNotFoundError, InferenceServerException))


if __name__ == "__main__":
    sys.exit(main())
