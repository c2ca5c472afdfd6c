"""``resnet-serve export``: a torchvision classifier -> checked ONNX and its model card (and int8);
or the card of an ONNX model exported elsewhere."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from resnet_serve.cli.common import DEFAULT_WORKDIR, add_weights_options, loaded_model, model_classes
from resnet_serve.contract import CLASSIFIER_INPUT, CLASSIFIER_OUTPUT, ONNX_OPSET
from resnet_serve.model_card import INTERPOLATIONS
from resnet_serve.progress import say


def add_parser(commands) -> argparse.ArgumentParser:
    parser = commands.add_parser(
        "export",
        help="export a classifier to ONNX, with its model card",
        description=f"A torchvision classifier -> ONNX (input '{CLASSIFIER_INPUT}' [N,3,S,S], output "
        f"'{CLASSIFIER_OUTPUT}' [N,classes], dynamic N), checked against torch with ONNX Runtime (max abs logit "
        "difference printed, failure above 1e-3). Beside it: the state_dict (.pt, for the GPU) and the model card "
        "(.json: architecture, input size, preprocessing from the weights' own transforms(), classes, labels), "
        "which `repo` reads. With --onnx FILE: only the card of a model exported elsewhere, written beside it.",
    )
    parser.add_argument(
        "--output", "-o", help=f"ONNX file to write (default {DEFAULT_WORKDIR}/<arch>.onnx, e.g. resnet50.onnx)"
    )
    parser.add_argument(
        "--onnx",
        metavar="FILE",
        help="a classifier exported elsewhere ([N,3,S,S] -> [N,classes]): write its card (FILE's name with .json) "
        "from --labels and the preprocessing options, export nothing",
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
    preprocessing = parser.add_argument_group(
        "preprocessing", "what the model was trained with (default: --arch's torchvision weights' transforms(); "
        "for --onnx: ImageNet's, resize 256/224 of its input size, bilinear)",
    )  # fmt: skip
    preprocessing.add_argument("--resize", type=int, metavar="PX", help="shorter side before the centre crop")
    preprocessing.add_argument("--interpolation", choices=INTERPOLATIONS, help="resize filter")
    preprocessing.add_argument("--mean", type=_three_floats, metavar="R,G,B", help="per-channel mean (0-1 scale)")
    preprocessing.add_argument("--std", type=_three_floats, metavar="R,G,B", help="per-channel std (0-1 scale)")
    return parser


def _three_floats(text: str) -> tuple[float, float, float]:
    try:
        values = tuple(float(item) for item in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3:
        raise argparse.ArgumentTypeError(f"expected three numbers R,G,B such as 0.485,0.456,0.406, got {text!r}")
    return values


def _preprocessing(args: argparse.Namespace) -> dict[str, object]:
    """The preprocessing options given on the command line (the others keep the card's)."""
    chosen = {"resize": args.resize, "interpolation": args.interpolation, "mean": args.mean, "std": args.std}
    return {key: value for key, value in chosen.items() if value is not None}


def run(args: argparse.Namespace) -> int:
    if args.onnx:
        return _describe_onnx(args)
    from resnet_serve.client import read_images
    from resnet_serve.model.agreement import report_openvino_precisions
    from resnet_serve.model.build import export_checked, export_int8, parity_batch

    if args.int8 and not args.calibration:
        say("error: --int8 needs --calibration IMG_OR_DIR (representative images, e.g. a few hundred photos)")
        return 2
    if args.calibration and not args.int8:
        say("error: --calibration calibrates the int8 model: add --int8, or leave --calibration out")
        return 2
    output = Path(args.output or DEFAULT_WORKDIR / f"{args.arch}.onnx")
    if output.is_dir():
        say(f"error: --output {output} is a folder: give the ONNX file's path, e.g. {output / (args.arch + '.onnx')}")
        return 2
    loaded = loaded_model(args)
    loaded.card = replace(loaded.card, **_preprocessing(args))
    export_checked(loaded, output, read_images(args.check_image), args.opset)
    print(output)
    int8 = export_int8(output, read_images(args.calibration), read_images(args.report)) if args.int8 else None
    if int8:
        print(int8)
    batch, what = parity_batch(read_images(args.report or args.check_image), loaded.card)
    report_openvino_precisions(output, int8, batch, what)
    return 0


def _describe_onnx(args: argparse.Namespace) -> int:
    from resnet_serve.errors import not_a_file
    from resnet_serve.model_card import ModelCardError, card_path, describe_onnx, read_card, write_card

    if args.weights or args.random_weights or args.int8 or args.output:
        raise ModelCardError("--onnx describes a model exported elsewhere: --weights, --random-weights, --int8 and "
                             "--output do not apply")  # fmt: skip
    model_file = Path(args.onnx)
    if not model_file.is_file():
        raise ModelCardError(not_a_file("ONNX file", model_file))
    if (existing := read_card(model_file)) is not None:  # it replaced export's card with ImageNet's defaults
        raise ModelCardError(f"{model_file} already has a card, {card_path(model_file)} ({existing.summary()}): "
                             "delete it first to describe the model anew")  # fmt: skip
    labels = model_classes(args)[1] if args.labels else ()
    card = describe_onnx(model_file, num_classes=args.num_classes, labels=labels, **_preprocessing(args))
    say(f"Model: {card.summary()}")
    print(write_card(model_file, card))
    return 0
