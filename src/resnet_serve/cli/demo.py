"""``resnet-serve demo``: the main job in one command."""

from __future__ import annotations

import argparse
from pathlib import Path

from resnet_serve.cli.common import (
    DEFAULT_WORKDIR,
    add_client_options,
    add_server_options,
    add_weights_options,
    find_server,
    loaded_model,
    print_results,
)
from resnet_serve.progress import say, step

# The photo NVIDIA's example classifies ("COFFEE MUG"), fetched when no image is given.
EXAMPLE_IMAGE_URL = "https://raw.githubusercontent.com/triton-inference-server/server/main/qa/images/mug.jpg"


def add_parser(commands) -> argparse.ArgumentParser:
    parser = commands.add_parser(
        "demo",
        help="build what is missing, serve, classify images, stop",
        description="The main job in one command: weights -> ONNX -> model repository -> "
        "tritonserver -> top-k for each image -> stop. Offline, falls back to random weights "
        "with a warning.",
    )
    parser.add_argument(
        "images",
        nargs="*",
        metavar="IMAGE",
        help="image files to classify (default: the example's mug.jpg, downloaded once into --workdir; offline, "
        "a picture made here)",
    )
    parser.add_argument(
        "--workdir", default=str(DEFAULT_WORKDIR), help=f"for the model, repository and log (default {DEFAULT_WORKDIR})"
    )
    add_weights_options(parser)
    add_server_options(parser)
    add_client_options(parser)
    return parser


def example_image(workdir: Path) -> Path:
    """The example's mug.jpg in ``workdir`` (downloaded once); offline, a synthetic photo made here."""
    import urllib.request

    from resnet_serve.bench import synthetic_photos

    photo = workdir / "mug.jpg"
    if photo.is_file():
        return photo
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        with urllib.request.urlopen(EXAMPLE_IMAGE_URL, timeout=10) as reply:
            data = reply.read()
    except OSError as exc:
        made = workdir / "synthetic.jpg"
        say(f"Could not fetch the example's photo ({exc.__class__.__name__}); classifying {made}, made here, instead")
        made.write_bytes(synthetic_photos(((500, 375),))[0])
        return made
    partial = photo.with_name(".mug.jpg.partial")
    partial.write_bytes(data)
    partial.replace(photo)
    say(f"Fetched the example's photo into {photo}")
    return photo


def run(args: argparse.Namespace) -> int:
    from resnet_serve.client import TritonClassifier, image_paths, read_images
    from resnet_serve.model.build import ensure_onnx
    from resnet_serve.repository import RepositorySpec, write_repository
    from resnet_serve.server import ServerSettings, TritonServer

    workdir = Path(args.workdir)
    paths = image_paths(args.images) if args.images else [example_image(workdir)]
    images = read_images(paths)
    loaded = loaded_model(args, fallback_to_random=True)
    onnx = ensure_onnx(workdir / f"{args.arch}.onnx", loaded, images)
    repository = workdir / "model_repository"
    with step(f"Writing model repository {repository}"):
        write_repository(repository, RepositorySpec(model_file=onnx, classifier="openvino"))
    settings = ServerSettings.on_free_ports(repository.resolve())
    server = TritonServer(settings, binary=find_server(args), log_path=(workdir / "tritonserver.log").resolve())
    with step(f"Starting tritonserver on 127.0.0.1 (log: {server.log_path})"):
        server.start()
    try:
        with TritonClassifier(server.grpc_url, "grpc") as client:
            client.logits(images[:1])  # first request warms the models
            results, latency_ms, requests = client.classify_each(images, args.top_k)
        print_results([str(path) for path in paths], results, latency_ms, requests, args.json)
    finally:
        with step("Stopping tritonserver"):
            server.stop()
    return 0
