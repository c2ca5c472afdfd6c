"""``resnet-serve classify``: classify images on a running server."""

from __future__ import annotations

import argparse

from resnet_serve.cli.common import add_client_options, add_connection_options, connection, duration, print_results
from resnet_serve.contract import ENSEMBLE_NAME
from resnet_serve.progress import say


def add_parser(commands) -> argparse.ArgumentParser:
    parser = commands.add_parser(
        "classify",
        help="classify images on a running server",
        description=f"Send the images to {ENSEMBLE_NAME} (or --model) in requests of at most the server's max batch "
        "(UINT8 [N, L], zero-padded, with their lengths) and print each one's top-k classes, labelled by the server, "
        "or its own error beside the others' answers.",
    )
    parser.add_argument(
        "images", nargs="+", metavar="IMAGE", help="image files, or folders of images (not their subfolders)"
    )
    parser.add_argument(
        "--url", help="server address: host:port, grpc://host:port or http(s)://host:port (default 127.0.0.1:8001)"
    )
    parser.add_argument(
        "--protocol", choices=["grpc", "http"], help="default: the --url scheme (grpc://, http://, https://), else grpc"
    )
    parser.add_argument("--model", default=ENSEMBLE_NAME, help=f"model to call (default {ENSEMBLE_NAME})")
    parser.add_argument("--timeout", type=duration(), default=60.0, help="request timeout in seconds (default 60)")
    add_client_options(parser)
    add_connection_options(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    from tritonclient.utils import InferenceServerException

    from resnet_serve.client import TritonClassifier, image_paths, read_images
    from resnet_serve.errors import ResnetServeError

    paths = image_paths(args.images)  # a folder without images is refused there
    with TritonClassifier(
        args.url, args.protocol, model=args.model, timeout_s=args.timeout, connection=connection(args)
    ) as client:
        try:
            results, latency_ms, requests = client.classify_each(read_images(paths), args.top_k)
        except (ResnetServeError, InferenceServerException):
            raise
        except Exception as exc:  # e.g. HTTP spoken to the gRPC port: the HTTP client cannot parse the answer
            raise ResnetServeError(
                f"{client.url} did not answer over {client.protocol} ({exc.__class__.__name__}); check --url "
                "and --protocol (gRPC listens on 8001 and HTTP on 8000 by default)"
            ) from None
    print_results([str(path) for path in paths], results, latency_ms, requests, args.json)
    failed = [(path, result) for path, result in zip(paths, results, strict=True) if isinstance(result, str)]
    if failed:
        path, why = failed[0]
        say(f"error: {len(failed)} of {len(paths)} image(s) could not be classified; {path}: {why}")
    return 1 if failed else 0
