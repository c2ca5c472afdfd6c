"""``resnet-serve repo``: write the Triton model repository."""

from __future__ import annotations

import argparse
from pathlib import Path

from resnet_serve.cli.common import (
    DEFAULT_INT8,
    DEFAULT_ONNX,
    DEFAULT_REPOSITORY,
    DEFAULT_TORCH,
    add_repository_options,
    repository_spec,
)
from resnet_serve.progress import step


def add_parser(commands) -> argparse.ArgumentParser:
    from resnet_serve.repository import CLASSIFIERS, PROFILES

    parser = commands.add_parser(
        "repo",
        help="write the Triton model repository",
        description="Write the ensemble (preprocess -> classifier) as a Triton model "
        "repository. Rewrites a repository it wrote; refuses other non-empty directories.",
    )
    parser.add_argument(
        "--output", "-o", default=str(DEFAULT_REPOSITORY), help=f"directory (default {DEFAULT_REPOSITORY})"
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--onnx", default=str(DEFAULT_ONNX), help=f"ONNX model (default {DEFAULT_ONNX})")
    source.add_argument("--plan", help="TensorRT plan (selects the resnet50_trt classifier)")
    source.add_argument(
        "--int8", action="store_true", help=f"serve the int8 model from `export --int8` ({DEFAULT_INT8})"
    )
    parser.add_argument(
        "--torch-weights", default=str(DEFAULT_TORCH), help=f"state_dict for --device cuda (default {DEFAULT_TORCH})"
    )
    parser.add_argument(
        "--target",
        choices=["bundled", "ngc"],
        default="bundled",
        help="bundled: the PyPI tritonserver (classifier on the Python backend); ngc: NVIDIA's tritonserver image "
        "(native onnxruntime backend, or tensorrt_plan with --plan)",
    )
    parser.add_argument(
        "--profile", choices=sorted(PROFILES), default="ours", help="; ".join(f"{k}: {v}" for k, v in PROFILES.items())
    )
    parser.add_argument(
        "--classifier",
        choices=sorted(CLASSIFIERS),
        help="; ".join(f"{k}: {c.model_name}, {c.runs_on}" for k, c in CLASSIFIERS.items())
        + " (default: ort, trt with --plan)",
    )
    add_repository_options(parser)
    return parser


def chosen_classifier(args: argparse.Namespace) -> str:
    """--classifier, else what the other options imply: trt for a plan, torch on the GPU, the target's ONNX one."""
    if args.classifier:
        return args.classifier
    if args.plan:
        return "trt"
    if args.device == "cuda":
        return "torch"
    return "onnx" if args.target == "ngc" else "ort"


def run(args: argparse.Namespace) -> int:
    from resnet_serve.repository import write_repository

    classifier = chosen_classifier(args)
    if classifier == "torch":
        model_file = args.torch_weights
    else:
        model_file = args.plan or (DEFAULT_INT8 if args.int8 else args.onnx)
    spec = repository_spec(args, model_file=Path(model_file), classifier=classifier, profile=args.profile)
    with step(f"Writing model repository {args.output} (classifier {spec.classifier_name})"):
        write_repository(args.output, spec)
    print(args.output)
    return 0
