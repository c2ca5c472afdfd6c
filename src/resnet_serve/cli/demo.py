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
    print_results,
)
from resnet_serve.progress import step


def add_parser(commands) -> argparse.ArgumentParser:
    parser = commands.add_parser(
        "demo",
        help="build what is missing, serve, classify images, stop",
        description="The main job in one command: weights -> ONNX -> model repository -> "
        "tritonserver -> top-k for each image -> stop. Offline, falls back to random weights "
        "with a warning.",
    )
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files to classify")
    parser.add_argument("--workdir", default=str(DEFAULT_WORKDIR), help="where the ONNX model, repository and log go")
    add_weights_options(parser)
    add_server_options(parser)
    add_client_options(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    from resnet_serve.build import ensure_onnx
    from resnet_serve.client import TritonClassifier, read_images
    from resnet_serve.repository import RepositorySpec, write_repository
    from resnet_serve.server import ServerSettings, TritonServer

    images = read_images(args.images)
    workdir = Path(args.workdir)
    onnx = ensure_onnx(workdir / "resnet50.onnx", args.weights, args.random_weights, images, fallback_to_random=True)
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
            results, latency_ms = client.classify(images, args.top_k)
        print_results(args.images, results, latency_ms, args.json)
    finally:
        with step("Stopping tritonserver"):
            server.stop()
    return 0
