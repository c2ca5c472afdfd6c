"""The resnet-serve command line, run as users run it (subprocesses, a real server)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from PIL import Image

from resnet_serve.gpu_placement import visible_gpu_count
from resnet_serve.model.weights import WEIGHTS_ENV, pretrained_cached, pretrained_weights

from conftest import DATA_DIR, encode, tiny_onnx

COMMANDS = ["demo", "export", "engine", "repo", "serve", "classify", "bench"]


def run_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "resnet_serve.cli", *args], capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help_explains_every_command(command):
    result = run_cli(*([command] if command else []), "--help")
    assert result.returncode == 0, result.stderr
    assert "usage: resnet-serve" in result.stdout
    if command is None:
        assert all(name in result.stdout for name in COMMANDS)


def test_classify_json_over_http(server, images, tmp_path):
    paths = []
    for name in ("mug_500x375.jpg", "mug_gray.png"):
        (tmp_path / name).write_bytes(images[name])
        paths.append(str(tmp_path / name))
    result = run_cli("classify", *paths, "--protocol", "http", "--url", server.http_url, "--top-k", "3", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert [entry["image"] for entry in report["images"]] == paths
    assert all(len(entry["top"]) == 3 for entry in report["images"])
    assert report["latency_ms"] > 0


def test_classify_reports_each_files_own_error_beside_the_others_answers(server, images, tmp_path):
    bad, tiff, good = tmp_path / "bad.jpg", tmp_path / "scan.tif", tmp_path / "good.jpg"
    bad.write_bytes(b"nope")
    tiff.write_bytes(encode(Image.new("RGB", (8, 8)), "TIFF"))
    good.write_bytes(images["mug_500x375.jpg"])
    result = run_cli("classify", str(bad), str(good), str(tiff), "--url", server.grpc_url, "--json")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    bad_answer, good_answer, tiff_answer = json.loads(result.stdout)["images"]
    assert bad_answer == {"image": str(bad), "error": bad_answer["error"]}
    assert bad_answer["error"].startswith("not a recognised image format")
    assert tiff_answer["error"].startswith("TIFF is refused on purpose")
    assert len(good_answer["top"]) == 5
    assert f"2 of 3 image(s) could not be classified; {bad}: not a recognised" in result.stderr


def test_classify_splits_more_images_than_the_servers_max_batch(server, images, tmp_path):
    folder = tmp_path / "many"
    folder.mkdir()
    for index in range(300):  # the server's max batch is 256
        (folder / f"{index:03}.jpg").write_bytes(images["mug_tiny.jpg"])
    result = run_cli("classify", str(folder), "--url", server.grpc_url, "--top-k", "1", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["requests"] == 2 and len(report["images"]) == 300
    assert len({entry["top"][0]["index"] for entry in report["images"]}) == 1  # the same image, the same answer


def test_classify_against_a_step_of_the_ensemble_says_which_model_to_call(server, images, tmp_path):
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(images["mug_tiny.jpg"])
    result = run_cli("classify", str(photo), "--url", server.grpc_url, "--model", "preprocess")
    assert result.returncode == 1 and "model preprocess gives no OUTPUT (classes)" in result.stderr, result.stderr


def test_url_may_name_its_protocol_and_a_wrong_one_is_one_line(server, images, tmp_path):
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(images["mug_500x375.jpg"])
    assert run_cli("classify", str(photo), "--url", f"http://{server.http_url}").returncode == 0
    assert run_cli("classify", str(photo), "--url", f"grpc://{server.grpc_url}").returncode == 0
    for args in (
        ["--url", f"http://{server.grpc_url}"],
        ["--protocol", "http", "--url", server.grpc_url],
        ["--url", f"ftp://{server.grpc_url}"],
        ["--url", f"http://{server.http_url}", "--protocol", "grpc"],
    ):
        result = run_cli("classify", str(photo), *args)
        assert result.returncode in (1, 2) and "Traceback" not in result.stderr, (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1, (args, result.stderr)


def test_every_option_of_every_command_says_what_it_does_and_its_default():
    import argparse

    from resnet_serve.cli import build_parser

    (commands,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    missing = []
    for name, parser in commands.choices.items():
        for action in parser._actions:
            flag = action.option_strings[0] if action.option_strings else action.dest
            if isinstance(action, argparse._HelpAction):
                continue
            stored = action.default not in (None, False, [], argparse.SUPPRESS)
            if not action.help:
                missing.append(f"{name} {flag}: no help")
            elif stored and not isinstance(action, argparse._StoreFalseAction) and "default" not in action.help:
                missing.append(f"{name} {flag}: help does not give its default {action.default!r}")
    assert not missing, missing


def test_version_is_printed():
    result = run_cli("--version")
    assert result.returncode == 0 and result.stdout.startswith("resnet-serve ")


def test_serve_without_a_repository_says_what_to_do(tmp_path):
    result = run_cli("serve", "--repository", str(tmp_path / "missing"))
    assert result.returncode == 2 and "resnet-serve repo" in result.stderr


def test_the_admin_key_comes_from_a_file_or_the_environment_so_ps_does_not_show_it(tmp_path):
    from resnet_serve.cli import build_parser
    from resnet_serve.cli.serve import KEY_VARIABLE, model_control_key
    from resnet_serve.server.access import AccessError

    def key(*argv: str, environ=None):
        return model_control_key(build_parser().parse_args(["serve", *argv]), environ or {})

    secret = tmp_path / "key"
    secret.write_text("admin-key=s3cret\n")
    assert key("--model-control-key-file", str(secret)) == "admin-key=s3cret"
    assert key(environ={KEY_VARIABLE: "admin-key=env"}) == "admin-key=env"
    assert key() is None  # serve makes a random one
    secret.write_text("\n")
    with pytest.raises(AccessError, match="first line must be HEADER=VALUE, got nothing"):
        key("--model-control-key-file", str(secret))
    with pytest.raises(AccessError, match="cannot read it"):
        key("--model-control-key-file", str(tmp_path / "missing"))
    secret.write_text("s3cret\n")  # no header: refused without showing the key
    with pytest.raises(AccessError, match="must be HEADER=VALUE") as refused:
        key("--model-control-key-file", str(secret))
    assert "s3cret" not in str(refused.value)
    with pytest.raises(AccessError, match=f"\\${KEY_VARIABLE}: the key must be HEADER=VALUE"):
        key(environ={KEY_VARIABLE: "s3cret"})
    result = run_cli("serve", "--model-control-key-file", str(tmp_path / "missing"), "--repository", str(tmp_path))
    assert result.returncode != 0 and result.stderr.strip().endswith("cannot read it (FileNotFoundError)")


@pytest.mark.server
def test_demo_end_to_end(model, onnx_model, images, tmp_path):
    # Reuse the session's export (same fixed-seed weights) so the demo skips the 12 s export step.
    import torch

    workdir = tmp_path / "work"
    workdir.mkdir()
    shutil.copyfile(onnx_model, workdir / "resnet50.onnx")
    torch.save(model.state_dict(), workdir / "resnet50.pt")
    (workdir / "resnet50.json").write_text(json.dumps({"weights": "random weights (seed 0)"}))
    image = tmp_path / "mug.jpg"
    image.write_bytes(images["mug.jpg"])
    result = run_cli("demo", str(image), "--random-weights", "--workdir", str(workdir))
    assert result.returncode == 0, result.stderr
    assert "Reusing" in result.stderr and "meaningless" in result.stderr
    assert "1. " in result.stdout and "5. " in result.stdout and "(class " in result.stdout
    assert "Stopping tritonserver: done" in result.stderr


def _real_weights() -> str | None:
    import os

    return os.environ.get(WEIGHTS_ENV) or (str(pretrained_cached()) if pretrained_cached() else None)


@pytest.mark.server
@pytest.mark.skipif(
    _real_weights() is None,
    reason=f"no real ImageNet weights here: set {WEIGHTS_ENV}=FILE or put {pretrained_weights('resnet50')} in "
    "torchvision's cache",
)
@pytest.mark.skipif(not (DATA_DIR / "mug.jpg").is_file(), reason=f"the example's photo is not in {DATA_DIR}")
def test_mug_is_a_coffee_mug_with_real_weights(images, tmp_path):
    image = tmp_path / "mug.jpg"
    image.write_bytes(images["mug.jpg"])
    result = run_cli("demo", str(image), "--weights", _real_weights(), "--workdir", str(tmp_path / "work"), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["images"][0]["top"][0]["label"] == "COFFEE MUG"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("127.0.0.1:8001", (None, False, "127.0.0.1:8001")),
        ("grpc://10.0.0.5:8001", ("grpc", False, "10.0.0.5:8001")),
        ("http://localhost:8000/", ("http", False, "localhost:8000")),
        ("https://infer.example:443", ("http", True, "infer.example:443")),
    ],
)
def test_a_url_may_carry_its_protocol(url, expected):
    from resnet_serve.client import split_url

    assert split_url(url) == expected


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["classify", "x.jpg", "--url", "http://[::1"], "give the server's address as host:port"),  # + a traceback
        (["classify", "x.jpg", "--url", "127.0.0.1"], "a port from 1 to 65535"),  # went to port 443
        (["classify", "x.jpg", "--url", "127.0.0.1:99999"], "Port out of range"),  # wrapped to 34463
        (["classify", "x.jpg", "--ssl", "--root-certificates", "nope.pem"], "root certificates nope.pem do not"),
        (["classify", "x.jpg", "--top-k", "-3"], "argument --top-k: must be 1 or more, got -3"),  # printed 997
        (["classify", "x.jpg", "--timeout", "0"], "argument --timeout: must be more than 0 seconds"),
        (["serve", "--http-port", "99999"], "argument --http-port: must be 1 to 65535, got 99999"),
        (["bench", "--seconds", "0"], "argument --seconds: must be more than 0 seconds"),  # ZeroDivisionError
        (["bench", "--concurrency", "1,0"], "argument --concurrency: must be 1 or more, got 0"),
        (["bench", "--images-per-request", "0"], "argument --images-per-request: must be 1 or more"),
        (["repo", "--max-batch-size", "0"], "max_batch_size must be from 1 to"),  # served, then refused all
        (["bench", "--json", "/nonexistent/x.json"], "cannot write results to /nonexistent/x.json"),  # after the run
        (["serve", "--repository", "x.jpg", "mistake"], "unexpected argument 'mistake': tritonserver's own"),
        (["repo", "--onnx", "DIR"], "is a folder"),
        (["classify", "x.jpg", "--root-certificates", "x.jpg"], "--root-certificates is the CA bundle for --ssl"),
        (["export", "--random-weights", "--calibration", "DIR"], "--calibration calibrates the int8 model"),
        (["repo", "--compiler", "aoti"], "--compiler aoti compiles the GPU classifier"),  # a CPU repository
        (["demo", "EMPTY"], "holds no image files"),  # exported, served, then failed (~90 s)
        (["repo", "--plan", "ONNX"], "is an ONNX model, not a TensorRT plan"),  # written as model.plan
        (["export", "--random-weights", "--output", "DIR"], "is a folder: give the ONNX file's path"),  # after export
    ],
)
def test_a_mistaken_option_is_one_line_that_says_what_to_do(args, words, images, tmp_path):
    tiny_onnx_file = tiny_onnx(tmp_path / "tiny.onnx")
    photo = tmp_path / "x.jpg"
    photo.write_bytes(images["mug_tiny.jpg"])
    (tmp_path / "empty").mkdir()
    named = {"x.jpg": str(photo), "DIR": str(tmp_path), "EMPTY": str(tmp_path / "empty"), "ONNX": str(tiny_onnx_file)}
    args = [named.get(arg, arg) for arg in args]
    result = run_cli(*args, *(["--output", str(tmp_path / "repo")] if args[0] == "repo" else []))
    assert result.returncode != 0 and words in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and "Exception ignored" not in result.stderr, result.stderr


@pytest.mark.skipif(visible_gpu_count() > 0, reason="this machine has a GPU")
def test_a_gpu_repository_written_without_a_gpu_says_where_to_serve_it(tmp_path):
    weights = tmp_path / "resnet50.pt"
    weights.write_bytes(b"state dict")
    result = run_cli("repo", "--device", "cuda", "--torch-weights", str(weights), "--output", str(tmp_path / "repo"))
    assert result.returncode == 0, result.stderr
    assert "No GPU is visible here: written for GPU 0 with 8 instances each; serve it on a machine" in result.stderr


def test_a_model_written_beside_others_says_how_a_running_server_gets_it(tmp_path):
    onnx, repository = tiny_onnx(tmp_path / "tiny.onnx"), str(tmp_path / "repo")
    first = run_cli("repo", "--onnx", str(onnx), "--runtime", "ort", "--output", repository)
    assert first.returncode == 0 and "Beside" not in first.stderr, first.stderr
    second = run_cli("repo", "--onnx", str(onnx), "--runtime", "ort", "--name", "mine", "--output", repository)
    assert second.returncode == 0, second.stderr
    assert f"Beside ensemble_python_resnet50: a serve already running on {repository} serves mine once" in second.stderr


@pytest.mark.server
def test_serve_names_the_model_that_did_not_load_and_why(tmp_path):
    # The cause was one row of Triton's tables, inside 40 lines of log; here, no TensorRT backend.
    from resnet_serve.server import free_port

    repository, plan = tmp_path / "repo", tmp_path / "resnet50.plan"
    plan.write_bytes(b"a plan built elsewhere")
    assert run_cli("repo", "--plan", str(plan), "--output", str(repository)).returncode == 0
    ports = [f"--{name}-port={free_port()}" for name in ("http", "grpc", "metrics")]
    result = run_cli("serve", "--repository", str(repository), *ports, "--log-file", str(tmp_path / "log"))
    assert result.returncode == 1
    assert (
        "model resnet50_trt did not load: Invalid argument: unable to find backend library for backend "
        "'tensorrt'" in result.stderr
    ), result.stderr
    assert "| Model" not in result.stderr and "Traceback" not in result.stderr  # the row, not the tables


def test_load_failures_are_read_from_tritons_model_table():
    from resnet_serve.server.process import load_failures

    log = """+------------+---------+------------------------------------------+
| Model      | Version | Status                                   |
+------------+---------+------------------------------------------+
| preprocess | 1       | READY                                    |
| mine_ort   | 1       | UNAVAILABLE: Internal: ValueError: bad   |
+------------+---------+------------------------------------------+"""
    assert load_failures(log) == ["model mine_ort did not load: Internal: ValueError: bad"]
    assert load_failures("I1203 server.cc:674] started") == []
