"""``resnet-serve bench``: load-test setups side by side (ours, int8, the seed, the in-process ceiling)."""

from __future__ import annotations

import argparse
from pathlib import Path

from resnet_serve.bench import SERVER_SETUPS, SETUPS
from resnet_serve.cli.common import (
    DEFAULT_INT8,
    DEFAULT_ONNX,
    DEFAULT_TORCH,
    DEFAULT_WORKDIR,
    add_connection_options,
    add_repository_options,
    add_runtime_option,
    add_server_options,
    classifier_kind,
    connection,
    duration,
    find_server,
    repository_spec,
    whole_number,
    whole_numbers,
)
from resnet_serve.progress import say


def add_parser(commands) -> argparse.ArgumentParser:
    parser = commands.add_parser(
        "bench",
        help="load-test setups side by side: ours, int8, the seed, the in-process ceiling",
        description="Concurrency sweep with tritonclient's asyncio client against each setup, one after "
        "another on the same server binary and images, so the ratios are honest. Reports img/s, "
        "p50/p90/p99 latency, errors, and Triton's queue/compute times and batch sizes per model.",
    )
    parser.add_argument("images", nargs="*", metavar="IMAGE", help="images or directories (default: a mix of sizes)")
    parser.add_argument("--setup", action="append", choices=SETUPS, help="repeatable (default: ours, seed, in-process)")
    parser.add_argument("--url", help="also (or only) bench a server already running here, as setup 'server'")
    parser.add_argument("--protocol", choices=["grpc", "http"], default="grpc", help="client protocol (default grpc)")
    parser.add_argument(
        "--concurrency",
        type=whole_numbers,
        default="1,2,4,8,16,32",
        help="comma-separated client counts (default 1,2,4,8,16,32)",
    )
    parser.add_argument("--seconds", type=duration(), default=10.0, help="measured time per point (default 10)")
    parser.add_argument(
        "--warmup", type=duration(zero=True), default=2.0, help="unmeasured time before each point (default 2)"
    )
    parser.add_argument(
        "--images-per-request", type=whole_number(1), default=1, help="images in each request (default 1)"
    )
    parser.add_argument(
        "--in-process-batch", type=whole_number(1), default=8, help="batch of the in-process ceiling (default 8)"
    )
    parser.add_argument("--onnx", default=str(DEFAULT_ONNX), help=f"fp32 model (default {DEFAULT_ONNX})")
    parser.add_argument("--int8-onnx", default=str(DEFAULT_INT8), help=f"int8 model (default {DEFAULT_INT8})")
    add_runtime_option(parser)
    parser.add_argument(
        "--torch-weights", default=str(DEFAULT_TORCH), help=f"state_dict for the GPU setups (default {DEFAULT_TORCH})"
    )
    parser.add_argument("--client-processes", type=whole_number(1), default=1, help="client processes (default 1)")
    workdir = DEFAULT_WORKDIR / "bench"
    parser.add_argument("--workdir", default=str(workdir), help=f"repositories and server logs (default {workdir})")
    parser.add_argument("--json", metavar="FILE", help="write every point as JSON")
    parser.add_argument("--csv", metavar="FILE", help="write every point as CSV")
    parser.add_argument("--plot", metavar="PNG", help="plot img/s and p99 against concurrency (needs matplotlib)")
    add_repository_options(parser)
    add_server_options(parser)
    add_connection_options(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    from resnet_serve import bench
    from resnet_serve.client import read_images
    from resnet_serve.errors import ResnetServeError

    for path in filter(None, (args.json, args.csv)):  # checked before minutes of load, not after them
        if Path(path).is_dir() or not Path(path).resolve().parent.is_dir():
            raise ResnetServeError(f"cannot write results to {path}: give a file in a folder that exists")
    images = read_images(args.images) if args.images else bench.synthetic_photos()
    sweep = bench.Sweep(
        concurrencies=args.concurrency,
        seconds=args.seconds,
        warmup_s=args.warmup,
        images_per_request=args.images_per_request,
        protocol=args.protocol,
        client_processes=args.client_processes,
    )
    points: list[bench.Point] = []
    if args.url:
        generator = bench.LoadGenerator(
            args.url,
            args.protocol,
            images,
            args.images_per_request,
            processes=args.client_processes,
            connection=connection(args),
        )
        points += bench.sweep(generator, "server", sweep.concurrencies, sweep.seconds, sweep.warmup_s)
    setups = args.setup or ([] if args.url else ["ours", "seed", "in-process"])
    files = bench.ModelFiles(
        onnx=Path(args.onnx),
        int8_onnx=Path(args.int8_onnx),
        torch_weights=Path(args.torch_weights),
    )
    gpu = args.device == "cuda"
    ours = repository_spec(
        args,
        model_file=files.torch_weights if gpu else files.onnx,
        classifier="torch" if gpu else classifier_kind(args.runtime),
    )
    binary = find_server(args) if set(setups) & set(SERVER_SETUPS) else None
    points += bench.run_setups(
        setups, ours, files, images, sweep, Path(args.workdir), binary, in_process_batch=args.in_process_batch
    )
    print(bench.table(points))
    # The seed where it ran (how far we are ahead), else the in-process ceiling (how close serving comes to it).
    baseline = next((setup for setup in ("seed", "in-process") if setup in setups), points[0].setup)
    print(bench.ratios(points, baseline))
    for path, render in ((args.json, bench.to_json), (args.csv, bench.to_csv)):
        if path:
            Path(path).write_text(render(points))
    if args.plot:
        say(f"Plot: {bench.plot(points, Path(args.plot))}")
    return 1 if any(p.errors for p in points) else 0
