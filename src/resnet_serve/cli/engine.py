"""``resnet-serve engine``: ONNX -> TensorRT plan (needs TensorRT)."""

from __future__ import annotations

import argparse
from pathlib import Path

from resnet_serve.cli.common import DEFAULT_ONNX, DEFAULT_WORKDIR
from resnet_serve.contract import MAX_BATCH_SIZE
from resnet_serve.progress import step


def add_parser(commands) -> argparse.ArgumentParser:
    parser = commands.add_parser(
        "engine",
        help="build a TensorRT plan from the ONNX model (needs TensorRT)",
        description="ONNX -> TensorRT plan with the tensorrt Python API, as the seed's trtexec command: fp16 and "
        "an optimisation profile over the batch axis. Build it on the GPU and TensorRT version that will serve it; "
        "then `resnet-serve repo --plan FILE` writes resnet50_trt.",
    )
    parser.add_argument("--onnx", default=str(DEFAULT_ONNX), help=f"ONNX model (default {DEFAULT_ONNX})")
    plan = DEFAULT_WORKDIR / "resnet50.plan"
    parser.add_argument("--output", "-o", default=str(plan), help=f"plan file to write (default {plan})")
    parser.add_argument("--precision", choices=["fp16", "fp32"], default="fp16", help="(default fp16)")
    parser.add_argument("--min-batch", type=int, default=1, help="smallest batch of the profile (default 1)")
    parser.add_argument("--opt-batch", type=int, default=1, help="batch TensorRT tunes for (default 1)")
    parser.add_argument(
        "--max-batch", type=int, default=MAX_BATCH_SIZE, help=f"largest batch of the profile (default {MAX_BATCH_SIZE})"
    )
    parser.add_argument("--workspace-mb", type=int, default=4096, help="builder workspace in MiB (default 4096)")
    return parser


def run(args: argparse.Namespace) -> int:
    from resnet_serve.engine import EngineSpec, build_plan

    spec = EngineSpec(
        fp16=args.precision == "fp16",
        min_batch=args.min_batch,
        opt_batch=args.opt_batch,
        max_batch=args.max_batch,
        workspace_bytes=args.workspace_mb << 20,
    )
    with step(f"Building TensorRT plan ({args.precision}, batch {args.min_batch}/{args.opt_batch}/{args.max_batch})"):
        build_plan(Path(args.onnx), Path(args.output), spec)
    print(args.output)
    return 0
