"""``resnet-serve export``: torch ResNet-50 -> checked ONNX (and int8)."""

from __future__ import annotations

import argparse
from pathlib import Path

from resnet_serve.cli.common import DEFAULT_ONNX, add_weights_options
from resnet_serve.contract import CLASSIFIER_INPUT, CLASSIFIER_OUTPUT, IMAGE_SIZE, NUM_CLASSES, ONNX_OPSET
from resnet_serve.progress import say


def add_parser(commands) -> argparse.ArgumentParser:
    parser = commands.add_parser(
        "export",
        help="export ResNet-50 to ONNX and check it against torch",
        description=f"torch ResNet-50 -> ONNX (input '{CLASSIFIER_INPUT}' [N,3,{IMAGE_SIZE},{IMAGE_SIZE}], output "
        f"'{CLASSIFIER_OUTPUT}' [N,{NUM_CLASSES}], dynamic N); then ONNX Runtime is checked against torch (max abs "
        "logit difference printed, failure above 1e-3).",
    )
    parser.add_argument(
        "--output", "-o", default=str(DEFAULT_ONNX), help=f"ONNX file to write (default {DEFAULT_ONNX})"
    )
    parser.add_argument("--opset", type=int, default=ONNX_OPSET, help=f"ONNX opset (default {ONNX_OPSET})")
    parser.add_argument(
        "--check-image",
        action="append",
        default=[],
        metavar="IMG",
        help="real image(s) for the parity check (repeatable; default: a fixed random batch)",
    )
    parser.add_argument(
        "--int8", action="store_true", help="also write <output>.int8.onnx by ONNX Runtime static QDQ quantization"
    )
    parser.add_argument(
        "--calibration", nargs="+", default=[], metavar="IMG", help="images or directories to calibrate int8 on"
    )
    parser.add_argument(
        "--report",
        nargs="+",
        default=[],
        metavar="IMG",
        help="print the agreement of int8 (ONNX Runtime, OpenVINO) and OpenVINO bf16 with fp32 on these images",
    )
    add_weights_options(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    from resnet_serve.agreement import report_openvino_precisions
    from resnet_serve.build import export_checked, export_int8, load_model, parity_batch
    from resnet_serve.client import read_images

    if args.int8 and not args.calibration:
        say("error: --int8 needs --calibration IMG_OR_DIR (representative images, e.g. a few hundred photos)")
        return 2
    output = Path(args.output)
    loaded = load_model(args.weights, args.random_weights, fallback_to_random=False)
    export_checked(loaded, output, read_images(args.check_image), args.opset)
    print(output)
    int8 = export_int8(output, read_images(args.calibration), read_images(args.report)) if args.int8 else None
    if int8:
        print(int8)
    batch, what = parity_batch(read_images(args.report or args.check_image))
    report_openvino_precisions(output, int8, batch, what)
    return 0
