"""Options and defaults that several commands share."""

from __future__ import annotations

import argparse
from pathlib import Path

from resnet_serve.contract import NUM_CLASSES
from resnet_serve.model_card import DEFAULT_ARCH

DEFAULT_WORKDIR = Path("build")
DEFAULT_ONNX = DEFAULT_WORKDIR / "resnet50.onnx"
DEFAULT_INT8 = DEFAULT_WORKDIR / "resnet50.int8.onnx"
RUNTIMES = ("openvino", "ort")


def whole_number(low: int, high: int | None = None):
    """An argparse type: an integer from ``low`` (to ``high``); a bad value is argparse's one-line error."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low or (high is not None and value > high):
            upper = f" to {high}" if high is not None else " or more"
            raise argparse.ArgumentTypeError(f"must be {low}{upper}, got {value}")
        return value

    return parse


def duration(*, zero: bool = False):
    """An argparse type: a finite time in seconds, more than 0 (or 0 too, where ``zero``)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
        if not (value >= 0 if zero else value > 0) or value == float("inf"):
            raise argparse.ArgumentTypeError(
                f"must be {'0 seconds or more' if zero else 'more than 0 seconds'}, got {text}"
            )
        return value

    return parse


def whole_numbers(text: str) -> list[int]:
    """An argparse type: comma-separated integers of 1 or more (e.g. client counts 1,2,4)."""
    return [whole_number(1)(part) for part in text.split(",")]


PORT = whole_number(1, 65535)


def add_runtime_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--runtime",
        choices=RUNTIMES,
        default="openvino",
        help="CPU classifier: openvino (bf16/int8 where the chip has them; default) or ort (ONNX Runtime)",
    )


def classifier_kind(runtime: str, target: str = "bundled") -> str:
    """The classifier kind of a CPU runtime: our Python-backend model, or the NGC image's native backend."""
    if runtime == "openvino":
        return "openvino_native" if target == "ngc" else "openvino"
    return "onnx" if target == "ngc" else "ort"


DEFAULT_TORCH = DEFAULT_WORKDIR / "resnet50.pt"
DEFAULT_REPOSITORY = DEFAULT_WORKDIR / "model_repository"


def add_weights_options(parser: argparse.ArgumentParser) -> None:
    """Which classifier, its weights and classes (export, demo)."""
    parser.add_argument(
        "--arch",
        default=DEFAULT_ARCH,
        metavar="NAME",
        help=f"torchvision classification model, e.g. efficientnet_b0, convnext_tiny (default {DEFAULT_ARCH})",
    )
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--weights",
        metavar="FILE",
        help="your state_dict or torchvision checkpoint for --arch (default: $RESNET_SERVE_WEIGHTS, else "
        "torchvision's pretrained weights, downloaded once into torchvision's cache)",
    )
    group.add_argument(
        "--random-weights",
        action="store_true",
        help="fixed-seed random weights (for tests and offline machines: classes are meaningless)",
    )
    parser.add_argument(
        "--num-classes",
        type=int,
        metavar="N",
        help="classes of your model (default: the labels file's lines, else 1000)",
    )
    parser.add_argument(
        "--labels", metavar="FILE", help="one label per line, in class order (default: ImageNet's, for 1000 classes)"
    )


def model_classes(args: argparse.Namespace) -> tuple[int, tuple[str, ...]]:
    """(number of classes, labels) from --num-classes and --labels, which must agree."""
    from resnet_serve.model_card import ModelCardError, read_labels

    labels = read_labels(args.labels) if args.labels else ()
    num_classes = args.num_classes or len(labels) or NUM_CLASSES
    if labels and len(labels) != num_classes:
        raise ModelCardError(f"--labels {args.labels} has {len(labels)} lines for --num-classes {num_classes}")
    return num_classes, labels


def loaded_model(args: argparse.Namespace, fallback_to_random: bool = False):
    """The classifier the weights options name (resnet_serve.model.weights.LoadedModel)."""
    from resnet_serve.model.build import load_model

    num_classes, labels = model_classes(args)
    return load_model(
        arch=args.arch,
        num_classes=num_classes,
        labels=labels,
        weights=args.weights,
        random_weights=args.random_weights,
        fallback_to_random=fallback_to_random,
    )


def add_server_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--server", metavar="PATH", help="tritonserver binary (default: PATH, then the nvidia-pytriton wheel)"
    )
    parser.add_argument(
        "--backend-directory", metavar="DIR", help="Triton backends directory (default: beside the binary)"
    )


def find_server(args: argparse.Namespace):
    from resnet_serve.server import find_server

    return find_server(args.server, args.backend_directory)


def add_repository_options(parser: argparse.ArgumentParser) -> None:
    """How the repository's steps batch, thread and guard their input (repo and bench): every
    option field of RepositorySpec and PreprocessOptions."""
    from resnet_serve.images.preprocess import PreprocessOptions
    from resnet_serve.options import add_arguments
    from resnet_serve.repository import RepositorySpec

    add_arguments(parser, RepositorySpec)
    add_arguments(parser, PreprocessOptions)


def repository_spec(args: argparse.Namespace, *, model_file: Path, classifier: str, profile: str = "auto", **overrides):
    """The RepositorySpec of the options :func:`add_repository_options` added, plus these values
    (``overrides`` replace options, e.g. ``precision="int8"`` for ``repo --int8``)."""
    from resnet_serve.images.preprocess import PreprocessOptions
    from resnet_serve.options import from_arguments
    from resnet_serve.repository import RepositorySpec

    preprocess = from_arguments(PreprocessOptions, args)
    return from_arguments(
        RepositorySpec,
        args,
        model_file=Path(model_file),
        classifier=classifier,
        profile=profile,
        preprocess=preprocess,
        **overrides,
    )


def add_connection_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ssl", action="store_true", help="TLS to the server (gRPC or HTTPS)")
    parser.add_argument("--root-certificates", metavar="PEM", help="CA bundle for --ssl (gRPC)")
    parser.add_argument(
        "--header",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="sent with every request, e.g. 'Authorization=Bearer TOKEN' (repeatable)",
    )


def connection(args: argparse.Namespace):
    from resnet_serve.client import Connection
    from resnet_serve.errors import ResnetServeError

    if bad := [item for item in args.header if "=" not in item]:
        raise ResnetServeError(f"--header needs KEY=VALUE, got {bad[0]!r}")
    if args.root_certificates and not args.ssl:
        raise ResnetServeError("--root-certificates is the CA bundle for --ssl: add --ssl, or leave it out")
    headers = dict(item.split("=", 1) for item in args.header)
    return Connection(ssl=args.ssl, root_certificates=args.root_certificates, headers=headers)


def add_client_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--top-k", type=whole_number(1), default=5, help="classes to show per image (default 5)")
    parser.add_argument("--json", action="store_true", help="print results as JSON")


def print_results(paths, results, latency_ms: float, requests: int, as_json: bool) -> None:
    """Top-k per image (or the image's own error), as text or JSON."""
    import json

    if as_json:
        images = [
            {"image": str(path), "error": result} if isinstance(result, str)
            else {"image": str(path), "top": [p.__dict__ for p in result]}
            for path, result in zip(paths, results, strict=True)
        ]  # fmt: skip
        print(json.dumps({"latency_ms": round(latency_ms, 3), "requests": requests, "images": images}, indent=2))
        return
    for path, result in zip(paths, results, strict=True):
        print(f"{path}:")
        if isinstance(result, str):
            print(f"  error: {result}")
            continue
        for rank, p in enumerate(result, 1):
            print(f"  {rank}. {p.label:<32} {p.probability:7.2%}  (class {p.index}, logit {p.logit:.3f})")
    print(f"{len(paths)} image(s) in {requests} request(s): {latency_ms:.1f} ms")
