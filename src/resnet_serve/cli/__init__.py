"""The ``resnet-serve`` command line: demo, export, engine, repo, serve, classify, bench.

Each command is a module here with ``add_parser(commands)`` (its options, beside its handler) and
``run(args)``; this module only assembles them and turns expected errors into one line.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from resnet_serve.cli import bench, classify, demo, engine, export, repo, serve
from resnet_serve.progress import say

COMMANDS = (demo, export, engine, repo, serve, classify, bench)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="resnet-serve",
        description="Serve image classification (your torchvision classifier, or ImageNet ResNet-50) on NVIDIA "
        "Triton, as the python_backend 'preprocessing' ensemble: build, serve, classify, benchmark.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    parser.add_argument("--debug", action="store_true", help="show the traceback of any error")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(commands).set_defaults(handler=command.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        say("interrupted")
        return 130
    except Exception as exc:
        if args.debug:
            raise
        if _is_expected(exc):
            say(f"error: {exc}")
        else:  # not a mistake we foresaw: still one line, the traceback on request
            first_line = next(iter(str(exc).strip().splitlines()), "")[:300]
            again = f"resnet-serve --debug {args.command} ... shows the traceback"
            say(f"error: {exc.__class__.__name__}: {first_line} ({again})")
        return 1


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("resnet_serve")
    except PackageNotFoundError:
        return "(not installed)"


def _is_expected(exc: Exception) -> bool:
    """Errors with a message meant for the user (printed without a traceback)."""
    from tritonclient.utils import InferenceServerException

    from resnet_serve.errors import ResnetServeError

    return isinstance(exc, (ResnetServeError, FileNotFoundError, InferenceServerException))
