"""``resnet-serve classify``: classify images on a running server."""

from __future__ import annotations

import argparse

from resnet_serve.cli.common import add_client_options, add_connection_options, connection, print_results
from resnet_serve.contract import ENSEMBLE_NAME


def add_parser(commands) -> argparse.ArgumentParser:
    parser = commands.add_parser(
        "classify",
        help="classify images on a running server",
        description=f"Send the images in ONE request (UINT8 [N, L], zero-padded) to {ENSEMBLE_NAME} and print "
        "the top-k classes.",
    )
    parser.add_argument("images", nargs="+", metavar="IMAGE")
    parser.add_argument("--url", help="server address (default 127.0.0.1:8001 for grpc, :8000 for http)")
    parser.add_argument("--protocol", choices=["grpc", "http"], default="grpc", help="default grpc")
    parser.add_argument("--model", default=ENSEMBLE_NAME, help=f"model to call (default {ENSEMBLE_NAME})")
    parser.add_argument("--timeout", type=float, default=60.0, help="request timeout in seconds")
    add_client_options(parser)
    add_connection_options(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    from resnet_serve.client import TritonClassifier, image_paths, read_images

    paths = image_paths(args.images)
    with TritonClassifier(
        args.url, args.protocol, model=args.model, timeout_s=args.timeout, connection=connection(args)
    ) as client:
        results, latency_ms = client.classify(read_images(paths), args.top_k)
    print_results([str(path) for path in paths], results, latency_ms, args.json)
    return 0
