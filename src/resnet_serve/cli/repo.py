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
    add_runtime_option,
    classifier_kind,
    repository_spec,
)
from resnet_serve.progress import say, step


def add_parser(commands) -> argparse.ArgumentParser:
    from resnet_serve.repository import PROFILES
    from resnet_serve.runtimes import RUNTIMES

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
        "--int8",
        action="store_true",
        help=f"serve the int8 model from `export --int8` ({DEFAULT_INT8}; same as --precision int8)",
    )
    add_runtime_option(parser)
    parser.add_argument(
        "--report",
        nargs="+",
        default=[],
        metavar="IMG",
        help="images to report bf16/int8 agreement with fp32 on (default: synthetic photos)",
    )
    parser.add_argument(
        "--torch-weights", default=str(DEFAULT_TORCH), help=f"state_dict for --device cuda (default {DEFAULT_TORCH})"
    )
    parser.add_argument(
        "--target",
        choices=["bundled", "ngc"],
        default="bundled",
        help="bundled: the PyPI tritonserver (classifier on the Python backend); ngc: NVIDIA's tritonserver image "
        "(native onnxruntime backend, or tensorrt_plan with --plan); default bundled",
    )
    parser.add_argument(
        "--profile",
        choices=sorted(PROFILES),
        default="auto",
        help="; ".join(f"{k}: {v}" for k, v in PROFILES.items()) + " (default auto)",
    )
    parser.add_argument(
        "--classifier",
        choices=sorted(RUNTIMES),
        help="; ".join(f"{k}: <arch>_{r.step}, {r.runs_on}" for k, r in RUNTIMES.items())
        + " (default: trt with --plan, torch with --device cuda, else --runtime's: openvino)",
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
    return classifier_kind(args.runtime, args.target)


def chosen_model_file(args: argparse.Namespace, classifier: str) -> Path:
    """The model the classifier serves: the plan, the state_dict, the int8 model for int8, else --onnx."""
    if classifier == "torch":
        return Path(args.torch_weights)
    if args.plan:
        return Path(args.plan)
    if args.int8 or (args.precision == "int8" and args.onnx == str(DEFAULT_ONNX)):
        return DEFAULT_INT8
    return Path(args.onnx)


def run(args: argparse.Namespace) -> int:
    from resnet_serve.gpu_placement import visible_gpu_count
    from resnet_serve.repository import read_marker, read_markers, write_repository

    classifier = chosen_classifier(args)
    spec = repository_spec(
        args,
        model_file=chosen_model_file(args, classifier),
        classifier=classifier,
        profile=args.profile,
        **({"precision": "int8"} if args.int8 else {}),
    )
    with step(f"Writing {spec.name} into {args.output} (classifier {spec.classifier_name}, model {spec.model_file})"):
        write_repository(args.output, spec)
    if spec.device == "cuda" and not visible_gpu_count():
        say(f"No GPU is visible here: written for GPU {', '.join(map(str, spec.gpu_ids))} with "
            f"{spec.image_instances} instances each; serve it on a machine that has them")  # fmt: skip
    elif spec.device == "cuda":
        say(f"GPUs {', '.join(map(str, spec.gpu_ids))}: {spec.image_instances} instances each take the images")
    say(f"Model: {spec.model_card.summary()}")
    if others := sorted(set(read_markers(args.output)) - {spec.name}):
        say(f"Beside {', '.join(others)}: a serve already running on {args.output} serves {spec.name} once "
            "restarted, or loaded over gRPC with its model-control key (Triton's RepositoryModelLoad)")  # fmt: skip
    precision = read_marker(args.output, spec.name).get("precision")
    if precision:
        say(f"Classifier precision: {precision}")
    if classifier == "openvino" and precision in ("bf16", "int8"):
        _report_agreement(args, spec.name, spec.model_file, precision)
    print(args.output)
    return 0


def _report_agreement(args: argparse.Namespace, name: str, model_file: Path, precision: str) -> None:
    """Print (and record in the repository) how far this precision agrees with fp32 on real images."""
    from resnet_serve.bench import synthetic_photos
    from resnet_serve.client import read_images
    from resnet_serve.model.agreement import openvino_agreement
    from resnet_serve.model.build import decodable_batch
    from resnet_serve.model_card import card_for, fp32_model_file
    from resnet_serve.repository import update_marker

    fp32 = Path(args.onnx)
    if fp32 == Path(model_file) and precision == "int8":  # --onnx named the int8 model itself
        fp32 = fp32_model_file(fp32)
    if not fp32.is_file():
        say(f"(no fp32 model at {fp32} to report {precision} agreement against)")
        return
    what = f"{len(args.report)} path(s)" if args.report else "synthetic photos (pass --report IMG for your own)"
    images = read_images(args.report) if args.report else synthetic_photos()
    with step(f"Comparing {precision} with fp32 on {what}"):
        batch = decodable_batch(images, "report", card_for(model_file))
        result = openvino_agreement(fp32, model_file, precision, batch)
    say(result.summary(precision))
    update_marker(args.output, name, agreement=result.as_dict())
