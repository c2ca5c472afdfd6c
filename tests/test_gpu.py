"""The GPU path. Its pure parts run on the CPU here (torch's CPU decode and resize stand in for
nvJPEG and CUDA); the CUDA parts (nvJPEG, CUDA graphs, the served GPU ensemble) skip without a GPU
and run on the lent H100 through benchmarks/gpu.sh."""

from __future__ import annotations

import copy
import io
import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from hostile_payloads import base_images, bit_flips, jpeg_cut_and_closed, random_bytes, truncations
from resnet_serve.gpu_placement import (
    gpu_memory_gib,
    image_instances_for,
    instance_gpu,
    memory_pool_args,
    parse_gpus,
    tensor_pool_bytes,
)
from resnet_serve.images.gpu_decode import DecoderChoice, TorchvisionDecoder, make_decoders, nvimgcodec_installed
from resnet_serve.images.preprocess import EXIF_ORIENTATION, open_checked, preprocess_batch, preprocess_image
from resnet_serve.images.preprocess_gpu import GpuPreprocessor, orient
from resnet_serve.repository import RepositoryError, RepositorySpec, read_config, read_marker, write_repository
from resnet_serve.server import ServerError, mps, procfs
from resnet_serve.server.mps import (
    CONTROL,
    DEFAULT_PIPE_DIRECTORY,
    DIRECTORY_PREFIX,
    PIPE_VARIABLE,
    MpsDaemon,
    start_daemon,
    stop_orphans,
)
from resnet_serve.torch_classifier import OUT_OF_MEMORY, GraphedClassifier, unless_out_of_memory

from conftest import EXACT, encode, reference_logits

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")
GPU_DECODERS = [
    "torchvision",
    pytest.param("nvimgcodec", marks=pytest.mark.skipif(not nvimgcodec_installed(), reason="nvImageCodec absent")),
]

# torch's antialiased bilinear resize follows Pillow's filter but rounds differently: measured on these
# images, at most a few grey levels on a few pixels; the mean difference is far below one level.
PIXEL_MEAN_ATOL = 0.01
PIXEL_MAX_ATOL = 0.2


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orient_matches_pillow_exif_transpose(orientation):
    pixels = np.random.default_rng(orientation).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    image = Image.fromarray(pixels)
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = orientation
    image.info["exif"] = exif.tobytes()
    image.getexif()[EXIF_ORIENTATION] = orientation
    expected = np.asarray(ImageOps.exif_transpose(image))
    ours = orient(torch.from_numpy(pixels).permute(2, 0, 1), orientation).permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(ours, expected)


def test_torch_preprocess_matches_the_cpu_reference(images):
    preprocess = GpuPreprocessor("cpu", torch.float32, EXACT)
    names = list(images)
    batch, errors = preprocess([images[name] for name in names])
    assert errors == [None] * len(names)
    for name, tensor in zip(names, batch.numpy(), strict=True):
        difference = np.abs(tensor - preprocess_image(images[name], EXACT))
        assert difference.mean() < PIXEL_MEAN_ATOL and difference.max() < PIXEL_MAX_ATOL, name


@pytest.mark.parametrize(
    "fields",
    [
        {"resize": 232, "crop": 224, "interpolation": "bicubic"},  # swin_t
        {"resize": 384, "crop": 384, "interpolation": "bilinear"},  # efficientnet_v2_s
        {"resize": 240, "crop": 200, "interpolation": "bilinear", "mean": (0.5, 0.5, 0.5), "std": (0.25, 0.5, 1.0)},
    ],
)
def test_torch_preprocess_follows_the_model_card(images, fields):
    options = replace(EXACT, **fields)
    names = ["mug_500x375.jpg", "mug_portrait.png", "mug_gray.png", "mug_tiny.jpg"]
    batch, errors = GpuPreprocessor("cpu", torch.float32, options)([images[name] for name in names])
    assert errors == [None] * len(names) and batch.shape[-2:] == (fields["crop"], fields["crop"])
    for name, tensor in zip(names, batch.numpy(), strict=True):
        difference = np.abs(tensor - preprocess_image(images[name], options)) * min(options.std) / 0.229
        assert difference.mean() < PIXEL_MEAN_ATOL and difference.max() < 2 * PIXEL_MAX_ATOL, name


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=needs_cuda)])
def test_the_gpu_path_refuses_what_the_cpu_path_refuses_in_the_same_words(mug_image, device):
    # Issue 16: the same bytes get the same outcome on both paths. nvJPEG decodes leniently, so every
    # refusal rule runs before it: images.checks, and with gpu_jpeg_check full libjpeg-turbo's strict
    # reading of the scans (JPEG bit flips are the lenient decoder's case).
    bases = base_images(mug_image)
    jpegs = {name: data for name, data in bases.items() if name.startswith("jpeg")}
    sent = truncations(bases, 8) + bit_flips(jpegs, 300) + random_bytes(60)
    payloads = [p.data for p in sent]
    _, cpu_errors = preprocess_batch(payloads, EXACT)
    _, gpu_errors = GpuPreprocessor(device, torch.float32, replace(EXACT, gpu_jpeg_check="full"))(payloads)
    outcomes = [(str(c) if c else None, str(g) if g else None) for c, g in zip(cpu_errors, gpu_errors, strict=True)]
    differ = [(index, cpu, gpu) for index, (cpu, gpu) in enumerate(outcomes) if cpu != gpu]
    refused = sum(cpu is not None for cpu, _ in outcomes)
    assert refused >= sum(p.must_refuse for p in sent)
    assert not differ, f"{len(differ)} of {len(payloads)} payloads differ (index, cpu, gpu): {differ[:5]}"


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=needs_cuda)])
def test_a_jpeg_scan_cut_and_closed_reaches_the_gpu_decoder_unless_the_scans_are_checked_first(mug_image, device):
    # The GPU decoders answer it (nvJPEG fills the rest, as torchvision's CPU stand-in does here); checked
    # first, it gets the CPU path's refusal and words.
    cut = jpeg_cut_and_closed(encode(mug_image.resize((640, 480)), "JPEG", quality=90), 0.6)
    _, lenient = GpuPreprocessor(device, torch.float32, EXACT)([cut])
    _, strict = GpuPreprocessor(device, torch.float32, replace(EXACT, gpu_jpeg_check="full"))([cut])
    assert lenient == [None]
    assert (
        str(strict[0]) == str(preprocess_batch([cut], EXACT)[1][0]) == "truncated JPEG: premature end of data segment"
    )


def test_only_jpegs_with_more_than_the_picture_in_their_header_are_opened_by_pillow_first(images, monkeypatch):
    # Pillow's header parse cost 36-42 us an image on the GPU host (RESULTS.md, stop 19); a plain JPEG
    # (no EXIF, profile or transform: images.checks) goes to the decoder without it, with the same answer.
    from resnet_serve.images import preprocess_gpu

    small = Image.open(io.BytesIO(images["mug_500x375.jpg"]))
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 6  # rotated: the answer shows whether the orientation was read
    rotated = encode(small, "JPEG", quality=90, exif=exif.tobytes())
    sent = {"plain": images["mug_500x375.jpg"], "exif": rotated, "png": images["mug_gray.png"]}
    opened = []

    def counting_open(data, *args):
        opened.append(data)
        return open_checked(data, *args)

    monkeypatch.setattr(preprocess_gpu, "open_checked", counting_open)
    batch, errors = GpuPreprocessor("cpu", torch.float32)(list(sent.values()))
    assert errors == [None] * 3
    assert opened == [sent["exif"]]  # a PNG goes to the CPU decoder, which opens its header once, itself
    for name, tensor in zip(sent, batch.numpy(), strict=True):
        difference = np.abs(tensor - preprocess_image(sent[name]))
        assert difference.mean() < PIXEL_MEAN_ATOL and difference.max() < PIXEL_MAX_ATOL, name


def test_jpegs_libjpeg_reads_as_rgb_or_refuses_for_two_frames_are_decoded_on_the_cpu(mug_image):
    # Which decoder the GPU path hands each JPEG to: the GPU's takes YCbCr or grey single-frame files;
    # samples stored as RGB (Adobe transform 0, or R,G,B ids without JFIF) and a second frame are libjpeg's.
    small = mug_image.convert("RGB").resize((48, 32))
    jpeg = encode(small, "JPEG", quality=90)
    app0_end = 4 + int.from_bytes(jpeg[4:6], "big")
    frame, scan = jpeg.index(b"\xff\xc0"), jpeg.index(b"\xff\xda")
    rgb_ids = bytearray(jpeg[:2] + jpeg[app0_end:])  # no JFIF segment
    shift = app0_end - 2
    for index, component in enumerate(b"RGB"):
        rgb_ids[frame - shift + 10 + 3 * index] = component
        rgb_ids[scan - shift + 5 + 2 * index] = component
    adobe_rgb = jpeg[:2] + b"\xff\xee\x00\x0eAdobe\x00\x64\x00\x00\x00\x00\x00" + jpeg[2:]  # transform 0
    gray = encode(small.convert("L"), "JPEG")
    two_frames = jpeg[:-2] + gray[gray.index(b"\xff\xc0") :]
    sent = {"ycbcr": jpeg, "rgb ids": bytes(rgb_ids), "adobe rgb": adobe_rgb, "two frames": two_frames}
    reached = []

    def recording_decoder(data):
        reached.extend(data)
        return TorchvisionDecoder(torch.device("cpu"))(data)

    preprocess = GpuPreprocessor("cpu", torch.float32)
    preprocess.decoders = DecoderChoice(recording_decoder, recording_decoder)
    _, errors = preprocess(list(sent.values()))
    assert reached == [sent["ycbcr"]]
    cpu_errors = [None if error is None else str(error) for error in preprocess_batch(list(sent.values()))[1]]
    assert [None if error is None else str(error) for error in errors] == cpu_errors
    assert cpu_errors[3] is not None  # libjpeg refuses the second frame


def test_warm_up_runs_every_decoder_a_batch_may_choose():
    calls = {"small": 0, "large": 0}

    def counting(name):
        def decode(data):
            calls[name] += 1
            return TorchvisionDecoder(torch.device("cpu"))(data)

        return decode

    preprocess = GpuPreprocessor("cpu", torch.float32)
    preprocess.decoders = DecoderChoice(counting("small"), counting("large"))
    preprocess.warm_up()
    assert calls["small"] >= 1 and calls["large"] >= 1


def test_each_jpeg_goes_to_the_decoder_of_its_size_one_call_per_decoder(images):
    calls = []

    def named(name):
        def decode(data):
            calls.append((name, len(data)))
            return TorchvisionDecoder(torch.device("cpu"))(data)

        return decode

    preprocess = GpuPreprocessor("cpu", torch.float32)
    preprocess.decoders = DecoderChoice(named("small"), named("large"))
    small, photo = images["mug_500x375.jpg"], images["mug.jpg"]  # 0.19 and 8.5 MP
    batch, errors = preprocess([small, photo, small])
    assert errors == [None] * 3 and sorted(calls) == [("large", 1), ("small", 2)]
    expected, _ = GpuPreprocessor("cpu", torch.float32)([small, photo, small])
    torch.testing.assert_close(batch, expected, rtol=0, atol=0)  # each answer back in its place


def test_images_of_one_size_resize_in_chunks_within_the_pixel_budget(images, monkeypatch):
    from resnet_serve.images import preprocess_gpu

    small = images["mug_500x375.jpg"]
    whole, _ = GpuPreprocessor("cpu", torch.float32)([small] * 5)
    sizes = []
    resize = preprocess_gpu.resize_crop_normalize
    monkeypatch.setattr(preprocess_gpu, "resize_crop_normalize", lambda b, o: sizes.append(len(b)) or resize(b, o))
    monkeypatch.setattr(preprocess_gpu, "RESIZE_CHUNK_PIXELS", 2 * 500 * 375)
    chunked, _ = GpuPreprocessor("cpu", torch.float32)([small] * 5)
    assert sizes == [2, 2, 1]
    torch.testing.assert_close(chunked, whole, rtol=0, atol=0)
    monkeypatch.setattr(preprocess_gpu, "RESIZE_CHUNK_PIXELS", 1)  # a budget under one image: one at a time
    sizes.clear()
    GpuPreprocessor("cpu", torch.float32)([small] * 2)
    assert sizes == [1, 1]


def test_torch_preprocess_reports_bad_images_alone(images):
    batch, errors = GpuPreprocessor("cpu", torch.float32)([images["mug_500x375.jpg"], b"junk", b""])
    assert errors[0] is None and batch.shape == (3, 3, 224, 224)
    assert "not a recognised image format" in str(errors[1]) and "empty image" in str(errors[2])


def test_eager_classifier_matches_the_model(model, images):
    batch = torch.from_numpy(np.stack([preprocess_image(images["mug_500x375.jpg"])]))
    classifier = GraphedClassifier(model, torch.device("cpu"), torch.float32, use_graphs=False)
    with torch.inference_mode():
        np.testing.assert_allclose(classifier(batch).numpy(), model(batch).numpy(), atol=1e-4)


def test_gpu_repository_passes_fp16_tensors_by_dlpack(tmp_path):
    weights = tmp_path / "resnet50.pt"
    weights.write_bytes(b"state dict")
    spec = RepositorySpec(model_file=weights, classifier="torch", device="cuda", profile="ours")
    root = write_repository(tmp_path / "repo", spec)
    preprocess = read_config(root / "preprocess" / "config.pbtxt")
    classifier = read_config(root / "resnet50_torch" / "config.pbtxt")
    assert preprocess.output[0].data_type == classifier.input[0].data_type  # FP16 both sides
    assert classifier.parameters["FORCE_CPU_ONLY_INPUT_TENSORS"].string_value == "no"
    assert "GpuPreprocessor" in (root / "preprocess" / "1" / "model.py").read_text()
    assert (root / "resnet50_torch" / "1" / "model.pt").read_bytes() == b"state dict"


@needs_cuda
@pytest.mark.parametrize("decoder", GPU_DECODERS)
def test_nvjpeg_preprocess_matches_the_cpu_path(images, decoder):
    names = list(images)
    gpu, errors = GpuPreprocessor("cuda", torch.float32, EXACT, decoder)([images[name] for name in names])
    cpu, _ = GpuPreprocessor("cpu", torch.float32, EXACT)([images[name] for name in names])
    assert errors == [None] * len(names)
    difference = (gpu.cpu() - cpu).abs()
    # nvJPEG's IDCT and colour conversion differ from libjpeg-turbo's by a grey level here and there.
    assert difference.mean() < 0.02, difference.mean()


@needs_cuda
@pytest.mark.parametrize("decoder", GPU_DECODERS)
def test_gpu_decode_is_within_a_hundredth_of_the_torchvision_eval_transform(images, decoder):
    from resnet_serve.images.reference import reference_tensor

    names = ["mug.jpg", "mug_500x375.jpg", "mug_tiny.jpg"]  # the JPEGs the GPU decodes
    batch, errors = GpuPreprocessor("cuda", torch.float32, EXACT, decoder)([images[name] for name in names])
    assert errors == [None] * len(names)
    for name, tensor in zip(names, batch.cpu().numpy(), strict=True):
        difference = np.abs(tensor - reference_tensor(images[name])).mean()
        assert difference <= 0.01, (name, difference)


@needs_cuda
def test_cuda_graph_classifier_captures_on_every_gpu_whatever_the_current_device(model, images):
    batch = torch.from_numpy(np.stack([preprocess_image(images["mug_500x375.jpg"])]))
    with torch.inference_mode():
        expected = model(batch).numpy()
    torch.cuda.set_device(0)  # a stub's current device unless told otherwise: capture must not depend on it
    for index in range(torch.cuda.device_count()):
        device = torch.device("cuda", index)
        fp16 = copy.deepcopy(model).to(device, torch.float16, memory_format=torch.channels_last)
        logits = GraphedClassifier(fp16, device, torch.float16, buckets=(1, 2))(batch.to(device))
        assert logits.device == device
        relative = np.abs(logits.cpu().numpy() - expected).max() / np.abs(expected).max()
        assert relative < 1e-2, (index, relative)


@needs_cuda
def test_cuda_graph_classifier_matches_fp32_within_fp16_tolerance(model, images):
    device = torch.device("cuda")
    fp16 = GraphedClassifier(
        copy.deepcopy(model).to(device, torch.float16, memory_format=torch.channels_last),
        device,
        torch.float16,
        buckets=(1, 4, 8),
    )
    batch = torch.from_numpy(np.stack([preprocess_image(d) for d in list(images.values())[:5]]))
    with torch.inference_mode():
        expected = model(batch).numpy()
    logits = fp16(batch.to(device)).cpu().numpy()  # 5 images: padded into the bucket of 8
    relative = np.abs(logits - expected).max() / np.abs(expected).max()
    assert relative < 1e-2, relative  # fp16 activations: ~1e-3 relative expected


def test_gpu_repository_places_one_pipeline_on_each_gpu(tmp_path):
    weights = tmp_path / "resnet50.pt"
    weights.write_bytes(b"state dict")
    spec = RepositorySpec(model_file=weights, classifier="torch", device="cuda", gpus="0,2", preprocess_instances=2,
                          profile="ours")  # fmt: skip
    root = write_repository(tmp_path / "repo", spec)
    preprocess = read_config(root / "preprocess" / "config.pbtxt")
    assert [(g.name, g.kind, g.count) for g in preprocess.instance_group] == [
        ("gpu_0", preprocess.instance_group[0].KIND_CPU, 2),
        ("gpu_2", preprocess.instance_group[0].KIND_CPU, 2),
    ]
    classifier = read_config(root / "resnet50_torch" / "config.pbtxt").instance_group[0]
    assert (classifier.kind, list(classifier.gpus)) == (classifier.KIND_GPU, [0, 2])
    assert "device" not in preprocess.parameters  # each instance finds its GPU; nothing hard-coded
    assert read_marker(root)["gpus"] == [0, 2]  # serve gives each of them the CUDA memory pool
    fused = write_repository(tmp_path / "fused", replace(spec, profile="fused", gpus="1"))
    groups = read_config(fused / "ensemble_python_resnet50" / "config.pbtxt").instance_group
    assert [g.name for g in groups] == ["gpu_1"]


def test_each_instance_finds_its_gpu_from_what_triton_tells_it():
    assert instance_gpu({"model_instance_kind": "GPU", "model_instance_device_id": "3"}) == 3
    cpu = {"model_instance_kind": "CPU", "model_instance_device_id": "0"}
    assert instance_gpu({**cpu, "model_instance_name": "gpu_2_1"}) == 2  # group gpu_2, its second instance
    assert instance_gpu({**cpu, "model_instance_name": "gpu_10_0"}) == 10
    assert instance_gpu({**cpu, "model_instance_name": "preprocess_0_0"}) == 0  # a repository of old


def test_gpus_with_less_memory_get_fewer_instances_by_default(tmp_path, monkeypatch):
    smi = tmp_path / "nvidia-smi"
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    spec = RepositorySpec(model_file=tmp_path / "m.pt", classifier="torch", device="cuda")
    for listed, instances in [("81559\n81559", 8), ("81559\n23034", 4), ("15360", 2), ("4096", 1), ("n/a", 8)]:
        smi.write_text(f"#!/bin/sh\necho '{listed}'\n")  # stands in for the NVIDIA driver's tool
        smi.chmod(0o755)
        gpu_memory_gib.cache_clear()
        assert spec.image_instances == instances, listed
    assert replace(spec, preprocess_instances=6).image_instances == 6  # asked for: as asked
    assert image_instances_for((), 8) == 8  # no nvidia-smi (CPU CI): the default
    gpu_memory_gib.cache_clear()


def test_the_tensor_pool_is_4_gib_on_gpus_of_64_gib_or_more():
    assert tensor_pool_bytes(True, (139.8, 139.8)) == 4 << 30
    assert tensor_pool_bytes(True, (139.8, 22.5)) == tensor_pool_bytes(True, ()) == 1 << 30  # the smallest; unknown
    assert tensor_pool_bytes(False, (139.8,)) == 0  # no GPU tensors between steps: no pool


def test_every_gpu_in_use_gets_the_cuda_memory_pool():
    assert memory_pool_args([0, 1], 1 << 30) == [
        "--cuda-memory-pool-byte-size=0:1073741824",
        "--cuda-memory-pool-byte-size=1:1073741824",
    ]
    assert memory_pool_args([0, 1], 0) == []


def test_gpus_option_takes_distinct_device_numbers(tmp_path):
    assert parse_gpus("0,1,3") == (0, 1, 3)
    for bad in ("", "a", "0,0", "-1"):
        with pytest.raises(ValueError, match=f"got {bad!r}"):
            parse_gpus(bad)
    with pytest.raises(RepositoryError, match="got '0,x'"):
        RepositorySpec(model_file=tmp_path / "m.pt", classifier="torch", device="cuda", gpus="0,x")


def fake_mps_control(tmp_path) -> tuple[dict[str, str], Path]:
    """An environment whose PATH has a stand-in for nvidia-cuda-mps-control (MPS needs an NVIDIA
    driver, absent here) that records each call, its pipe directory and its input, and runs no
    daemon: here the CUDA check fails (no driver), on a GPU host CUDA runs without MPS (no server)."""
    calls = tmp_path / "calls"
    control = tmp_path / "bin" / CONTROL
    control.parent.mkdir()
    control.write_text(f'#!/bin/sh\necho "$* $CUDA_MPS_PIPE_DIRECTORY $(cat)" >> {calls}\n')
    control.chmod(0o755)
    return {"PATH": str(control.parent)}, calls


HOST_MPS = bool(os.environ.get(PIPE_VARIABLE)) or (DEFAULT_PIPE_DIRECTORY / "control").exists()
host_mps = pytest.mark.skipif(HOST_MPS, reason="this host runs an MPS daemon of its own, which a server uses as it is")


@host_mps
def test_mps_auto_serves_without_a_daemon_cuda_does_not_run_through_and_stops_it(tmp_path):
    env, calls = fake_mps_control(tmp_path)
    daemon, sharing = start_daemon("auto", [0], env)
    assert daemon is None and sharing.startswith("without MPS: the MPS daemon did not work: "), sharing
    lines = calls.read_text().splitlines()
    pipe = Path(lines[0].split()[1])
    assert lines[0].startswith("-d ") and pipe.name == "pipe" and lines[-1].split() == [str(pipe), "quit"]
    assert not pipe.parent.exists()  # its directory went with it
    with pytest.raises(ServerError, match="--mps on: the MPS daemon did not work"):
        start_daemon("on", [0], env)


def test_a_start_stops_the_mps_daemons_of_dead_serves_and_only_theirs(tmp_path):
    env, calls = fake_mps_control(tmp_path)
    gone = subprocess.Popen(["true"])
    gone.wait()  # a pid that runs no more, as a SIGKILLed serve's
    orphan, live = tmp_path / f"{DIRECTORY_PREFIX}{gone.pid}-a1", tmp_path / f"{DIRECTORY_PREFIX}{os.getpid()}-b2"
    open_to_all = tmp_path / f"{DIRECTORY_PREFIX}{gone.pid}-c3"  # not as mkdtemp makes ours: someone else's
    for directory in (orphan, live, open_to_all, tmp_path / f"{DIRECTORY_PREFIX}other"):
        (directory / "pipe").mkdir(parents=True)
        directory.chmod(0o755 if directory == open_to_all else 0o700)
    bystander = subprocess.Popen(["sleep", "60"])  # a stale pid file naming it: not the control program
    (orphan / "pipe" / "nvidia-cuda-mps-control.pid").write_text(str(bystander.pid))
    try:
        assert stop_orphans(Path(env["PATH"]) / CONTROL, tmp_path) == 1
        assert f"{orphan / 'pipe'} quit" in calls.read_text()  # told to quit through its own pipe
        assert not orphan.exists() and live.exists() and open_to_all.exists()
        assert (tmp_path / f"{DIRECTORY_PREFIX}other").exists() and bystander.poll() is None
    finally:
        bystander.kill()


@host_mps
def test_mps_is_only_started_for_gpu_servers_without_a_daemon_of_the_hosts(tmp_path):
    env, calls = fake_mps_control(tmp_path)
    assert start_daemon("auto", [], env) == (None, "")  # a CPU repository
    assert start_daemon("off", [0], env) == (None, "no MPS daemon of its own (--mps off)")
    host = {**env, "CUDA_MPS_PIPE_DIRECTORY": "/run/mps"}
    assert start_daemon("on", [0], host) == (None, "MPS: the host's daemon (/run/mps)")
    assert not calls.exists()  # none of these ran the control program
    assert start_daemon("auto", [0], {"PATH": str(tmp_path)})[1].startswith(f"without MPS: {CONTROL} is not on PATH")
    with pytest.raises(ServerError, match=f"--mps on: {CONTROL} is not on PATH"):
        start_daemon("on", [0], {"PATH": str(tmp_path)})
    with pytest.raises(ServerError, match="got 'yes'"):
        start_daemon("yes", [0], env)


def test_mps_clients_name_the_daemons_gpus_by_uuid_never_by_the_numbers_they_were_given():
    pipes = {PIPE_VARIABLE: "/tmp/d/pipe", "CUDA_MPS_LOG_DIRECTORY": "/tmp/d/log"}
    daemon = MpsDaemon(control=Path(CONTROL), directory=Path("/tmp/d"), visible_devices="GPU-a,GPU-b")
    client = daemon.client_environment({"CUDA_VISIBLE_DEVICES": "2,3", "PATH": "/bin"})
    assert client == {"PATH": "/bin", **pipes, "CUDA_VISIBLE_DEVICES": "GPU-a,GPU-b"}
    every_gpu = MpsDaemon(control=Path(CONTROL), directory=Path("/tmp/d"))
    assert every_gpu.client_environment({"PATH": "/bin"}) == {"PATH": "/bin", **pipes}


def test_cuda_visible_devices_without_gpu_numbers_reaches_mps_as_it_is(monkeypatch):
    monkeypatch.setattr(mps, "_UUIDS", "raise SystemExit('the GPUs were listed')")  # so listing them fails
    for value in ["GPU-a,MIG-b", "", "-1"]:  # UUIDs and MIG ids; no GPU
        assert mps._visible_uuids({"CUDA_VISIBLE_DEVICES": value}) == value
    assert mps._visible_uuids({}) is None  # every GPU


@host_mps
def test_gpu_numbers_cuda_cannot_turn_into_uuids_leave_the_server_without_mps_and_say_why(tmp_path, monkeypatch):
    env, calls = fake_mps_control(tmp_path)
    monkeypatch.setattr(mps, "_UUIDS", "print('GPU-a')")  # a driver that finds the first GPU only
    daemon, sharing = start_daemon("auto", [0, 1], {**env, "CUDA_VISIBLE_DEVICES": "0,7"})
    assert daemon is None
    assert sharing.startswith("without MPS: CUDA_VISIBLE_DEVICES='0,7' names 2 GPUs, but CUDA finds 1"), sharing
    monkeypatch.setattr(mps, "_UUIDS", "raise SystemExit('cuInit failed: CUDA_ERROR_NO_DEVICE (100)')")
    expected = "--mps on: CUDA_VISIBLE_DEVICES='7': CUDA could not list these GPUs: cuInit failed: CUDA_ERROR_NO"
    with pytest.raises(ServerError, match=expected):
        start_daemon("on", [0], {**env, "CUDA_VISIBLE_DEVICES": "7"})
    assert not calls.exists()  # no daemon was started


@host_mps
@pytest.mark.server
def test_a_server_whose_mps_daemon_cannot_run_serves_without_it_and_leaves_none(tmp_path, repository, monkeypatch):
    from resnet_serve.server import ServerSettings, TritonServer

    env, calls = fake_mps_control(tmp_path)
    monkeypatch.setenv("PATH", f"{env['PATH']}:{os.environ['PATH']}")
    settings = ServerSettings.on_free_ports(repository, gpus=[0])  # as if the repository ran on GPU 0
    with TritonServer(settings, log_path=tmp_path / "log") as server:
        assert server.mps is None and server.gpu_sharing.startswith("without MPS: the MPS daemon did not work")
        assert server.is_serving()
    with pytest.raises(ServerError, match="--mps on: the MPS daemon did not work"):
        TritonServer(replace(settings, mps="on"), log_path=tmp_path / "log").start()
    pipes = [Path(line.split()[1]) for line in calls.read_text().splitlines() if line.startswith("-d ")]
    assert len(pipes) == 2 and not any(pipe.parent.exists() for pipe in pipes)


FAKE_LIBCUDA = """
#include <stdlib.h>
#include <string.h>
int cuInit(unsigned flags) { return 0; }
int cuDeviceGet(int *device, int index) { *device = index; return 0; }
/* The GPUs CUDA_VISIBLE_DEVICES lists by number (2 without it); GPU n's UUID is 16 bytes 0xa0 + n. */
int cuDeviceGetCount(int *count) {
    const char *list = getenv("CUDA_VISIBLE_DEVICES");
    *count = list ? 1 : 2;
    for (; list && *list; list++) *count += *list == ',';
    return 0;
}
static int gpu_number(int device) {
    const char *list = getenv("CUDA_VISIBLE_DEVICES");
    for (int i = 0; list && i < device; i++) list = strchr(list, ',') + 1;
    return list ? atoi(list) : device;
}
int cuDeviceGetUuid(unsigned char *uuid, int device) {
    memset(uuid, 0xa0 + gpu_number(device), 16);
    return 0;
}
int cuDeviceGetUuid_v2(unsigned char *uuid, int device) { return cuDeviceGetUuid(uuid, device); }
int cuDevicePrimaryCtxRetain(void **context, int device) { *context = (void *) 1; return 0; }
int cuDevicePrimaryCtxRelease_v2(int device) { return 0; }
int cuGetErrorName(int code, const char **name) { *name = "CUDA_ERROR_FAKE"; return 0; }
"""
# Stands in for the daemon: "-d" leaves a process and its pid file as the real one does (the process
# named as the real one: a pid file naming any other process is not trusted); an MPS
# server is listed once a client asked; "quit" ends the daemon.
FAKE_DAEMON = """#!/bin/sh
command=$(cat)
pipe=$CUDA_MPS_PIPE_DIRECTORY
case "$1$command" in
  -d) cp "$(command -v sleep)" "$pipe/nvidia-cuda-mps-control"
      "$pipe/nvidia-cuda-mps-control" 600 >/dev/null 2>&1 & echo $! > "$pipe/nvidia-cuda-mps-control.pid" ;;
  get_server_list) echo "$(cat "$pipe/nvidia-cuda-mps-control.pid")" ;;
  quit) kill "$(cat "$pipe/nvidia-cuda-mps-control.pid")" ;;
esac
"""


@host_mps
@pytest.mark.server
@pytest.mark.skipif(not shutil.which("cc"), reason="no C compiler for a stand-in CUDA driver")
def test_a_server_runs_its_clients_through_its_mps_daemon_on_the_gpus_uuids_and_stops_it(
    tmp_path, repository, monkeypatch
):
    """CUDA and MPS cannot exist here: a compiled stand-in for libcuda and a script for the daemon
    let the real tritonserver start with the environment serve gives a GPU server's processes."""
    from resnet_serve.server import ServerSettings, TritonServer

    (tmp_path / "bin").mkdir()
    (tmp_path / "cuda.c").write_text(FAKE_LIBCUDA)
    subprocess.run(["cc", "-shared", "-fPIC", "-o", tmp_path / "libcuda.so.1", tmp_path / "cuda.c"], check=True)
    (tmp_path / "bin" / CONTROL).write_text(FAKE_DAEMON)
    (tmp_path / "bin" / CONTROL).chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    monkeypatch.setenv("LD_LIBRARY_PATH", f"{tmp_path}:{os.environ.get('LD_LIBRARY_PATH', '')}")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")  # the stand-in driver's UUIDs: a2a2.. and a3a3..
    (tmp_path / "cwd").mkdir()  # stays empty (a first version made a directory named after the UUIDs)
    monkeypatch.chdir(tmp_path / "cwd")
    settings = ServerSettings.on_free_ports(repository, gpus=[0, 1])
    with TritonServer(settings, log_path=tmp_path / "log") as server:
        assert server.mps is not None and server.gpu_sharing.startswith("MPS: a daemon of this server's own")
        daemon = server.mps.daemon_pid()
        uuids = b"GPU-a2a2a2a2-a2a2-a2a2-a2a2-a2a2a2a2a2a2,GPU-a3a3a3a3-a3a3-a3a3-a3a3-a3a3a3a3a3a3"
        for pid in (server.process.pid, daemon):
            lines = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            environment = dict(line.split(b"=", 1) for line in lines if line)
            assert environment[PIPE_VARIABLE.encode()] == str(server.mps.directory / "pipe").encode()
            assert environment[b"CUDA_VISIBLE_DEVICES"] == uuids
        assert procfs.alive(daemon) and server.is_serving()
        directory = server.mps.directory
    assert not procfs.alive(daemon) and not directory.exists() and not any((tmp_path / "cwd").iterdir())


def test_auto_decoder_takes_the_large_image_decoder_only_for_large_images():
    choice = DecoderChoice(small="torchvision", large="nvimgcodec")
    assert choice.for_image(500 * 375) == "torchvision"  # torchvision measured faster at every batch
    assert choice.for_image(3361 * 2521) == "nvimgcodec"  # camera photos: nvImageCodec served 17% more
    on_cpu = make_decoders(torch.device("cpu"), "auto")  # tests without a GPU: torchvision's CPU decoder
    assert on_cpu.small is on_cpu.large and isinstance(on_cpu.small, TorchvisionDecoder)
    with pytest.raises(ValueError, match="unknown GPU decoder 'nvjpeg'"):
        make_decoders(torch.device("cpu"), "nvjpeg")


def test_gpu_classifiers_are_told_to_pick_the_same_kernels_in_every_instance_unless_asked_not_to(tmp_path):
    weights = tmp_path / "resnet50.pt"
    weights.write_bytes(b"state dict")
    for profile, model in (("fused", "ensemble_python_resnet50"), ("ours", "resnet50_torch")):
        for deterministic in (True, False):
            spec = RepositorySpec(model_file=weights, classifier="torch", device="cuda", profile=profile,
                                  deterministic=deterministic)  # fmt: skip
            config = read_config(write_repository(tmp_path / "repo", spec) / model / "config.pbtxt")
            assert config.parameters["deterministic"].string_value == str(deterministic).lower()


def test_a_classifier_built_deterministic_turns_cudnn_timing_off_and_one_built_tuned_turns_it_on():
    model = torch.nn.Conv2d(3, 4, 3)
    try:
        GraphedClassifier(model, torch.device("cpu"), torch.float32, use_graphs=False, deterministic=False)
        assert torch.backends.cudnn.benchmark and not torch.backends.cudnn.deterministic
        GraphedClassifier(model, torch.device("cpu"), torch.float32, use_graphs=False)  # the default
        assert not torch.backends.cudnn.benchmark and torch.backends.cudnn.deterministic
    finally:
        torch.backends.cudnn.benchmark = torch.backends.cudnn.deterministic = False


def test_fused_profile_keeps_the_ensemble_contract(tmp_path):
    weights = tmp_path / "resnet50.pt"
    weights.write_bytes(b"state dict")
    spec = RepositorySpec(model_file=weights, classifier="torch", device="cuda", profile="fused")
    root = write_repository(tmp_path / "repo", spec)
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == ["ensemble_python_resnet50"]
    config = read_config(root / "ensemble_python_resnet50" / "config.pbtxt")
    assert (config.input[0].name, config.output[0].name, config.max_batch_size) == ("INPUT", "OUTPUT", 256)
    assert config.input[0].allow_ragged_batch and config.backend == "python"


@pytest.mark.server
@needs_cuda
@pytest.mark.parametrize(
    ("profile", "mps", "compiler"),
    [("ours", "on", "none"), ("fused", "on", "none"), ("fused", "off", "none"), ("fused", "on", "aoti")],
)
def test_gpu_ensemble_serves_the_same_logits(tmp_path, model, images, profile, mps, compiler):
    from resnet_serve.client import TritonClassifier
    from resnet_serve.server import ServerSettings, TritonServer, expected_stub_count

    weights = tmp_path / "resnet50.pt"
    torch.save(model.state_dict(), weights)
    spec = RepositorySpec(model_file=weights, classifier="torch", device="cuda", preprocess=EXACT, profile=profile,
                          compiler=compiler)  # fmt: skip
    root = write_repository(tmp_path / "repo", spec)
    gpus = read_marker(root)["gpus"]  # every visible GPU by default
    if mps == "on" and (not shutil.which(CONTROL) or HOST_MPS):
        pytest.skip(f"{CONTROL} is not on PATH, or the host runs its own MPS daemon")
    settings = ServerSettings.on_free_ports(root, cuda_memory_pool_bytes=1 << 30, gpus=gpus, mps=mps)
    names = ["mug.jpg", "mug_500x375.jpg", "mug_gray.png", "mug_cmyk.jpg", "mug_tiny.jpg"]
    with TritonServer(settings, log_path=tmp_path / "log") as server, TritonClassifier(server.grpc_url) as client:
        assert (server.mps is not None) == (mps == "on"), server.gpu_sharing
        served = client.logits([images[name] for name in names])
        with pytest.raises(Exception, match="image 1: not a recognised image format"):
            client.logits([images["mug.jpg"], b"junk"])
        again = client.logits([images["mug_500x375.jpg"]])
        # Concurrent requests: executions on every GPU, and classifier batches that mix the outputs of
        # preprocess instances on different GPUs (the two-step ensemble cannot keep a request on one GPU).
        with ThreadPoolExecutor(8 * len(gpus)) as pool:
            answers = list(pool.map(lambda _: client.logits([images["mug_500x375.jpg"]] * 8), range(32 * len(gpus))))
        for answer in answers:
            np.testing.assert_allclose(answer, np.repeat(again, 8, axis=0), atol=2e-3 * np.abs(again).max())
        assert len(server.stub_pids()) == expected_stub_count(root)  # serve's count of KIND_GPU stubs holds
        assert gpus_running(server.stub_pids()) == set(gpus)  # one pipeline on each GPU, not all on GPU 0
        if server.mps is not None:  # this server's own daemon runs an MPS server
            daemon = [server.mps.daemon_pid(), *server.mps.server_pids()]
            assert len(daemon) == 2 and all(map(procfs.alive, daemon)), daemon
    if mps == "on":
        assert not any(map(procfs.alive, daemon))  # stopped with tritonserver
    log = (tmp_path / "log").read_text()
    assert "failed to copy data" not in log  # GPU tensors went by DLPack, not through the host
    served_from = "classifier model.pt2, compiled for " if compiler == "aoti" else "classifier model.pt, eager (no"
    instances = spec.image_instances if profile == "fused" else spec.classifier_instances
    assert log.count(served_from) == instances * len(gpus), log[-2000:]
    expected = reference_logits(model, [images[name] for name in names])
    relative = np.abs(served - expected).max() / np.abs(expected).max()
    assert relative < 2e-2, relative  # fp16 classifier + nvJPEG/torch resize vs torchvision fp32
    np.testing.assert_allclose(again[0], served[1], atol=2e-3 * np.abs(served).max())  # fp16: batch 1 vs 5
    print(f"GPU {profile} on GPUs {gpus} vs CPU reference: max relative logit difference {relative:.2e}")


def gpus_running(pids: list[int]) -> set[int | str]:
    """The GPUs (CUDA's numbering) on which any of ``pids`` holds a CUDA context (NVML, which numbers
    every GPU of the host: matched to CUDA's by UUID; a GPU CUDA does not show is named in words)."""
    pynvml = pytest.importorskip("pynvml")
    cuda_index = {str(torch.cuda.get_device_properties(i).uuid): i for i in range(torch.cuda.device_count())}
    pynvml.nvmlInit()
    try:
        found = set()
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            running = [*pynvml.nvmlDeviceGetComputeRunningProcesses(handle),
                       *pynvml.nvmlDeviceGetMPSComputeRunningProcesses(handle)]  # fmt: skip
            uuid = pynvml.nvmlDeviceGetUUID(handle)
            uuid = (uuid.decode() if isinstance(uuid, bytes) else uuid).removeprefix("GPU-")
            if {p.pid for p in running} & set(pids):
                found.add(cuda_index.get(uuid, f"a GPU outside CUDA_VISIBLE_DEVICES ({uuid})"))
        return found
    finally:
        pynvml.nvmlShutdown()


@pytest.mark.server
@needs_cuda
@pytest.mark.parametrize("arch", ["efficientnet_b0", "efficientnet_v2_s"])
def test_fused_profile_serves_other_architectures_at_their_own_size(tmp_path, images, arch):
    # efficientnet_b0: bicubic 256/224; efficientnet_v2_s: 384/384 (CUDA graphs at that size). In fp32:
    # randomly initialised EfficientNets give logits of 4e-14 (b0) to 3e-6 (v2_s), below fp16's range
    # (b0's came back as zeros in fp16 on an H200); trained weights do not, and fp16 is the ResNet-50 test's.
    from resnet_serve.client import TritonClassifier
    from resnet_serve.model.build import export_checked
    from resnet_serve.model.weights import pretrained_weights, random_model
    from resnet_serve.server import ServerSettings, TritonServer

    loaded = random_model(arch)
    onnx = tmp_path / f"{arch}.onnx"
    export_checked(loaded, onnx, [], opset=18)  # writes the .pt and the card the repository reads
    spec = RepositorySpec(model_file=onnx.with_suffix(".pt"), classifier="torch", device="cuda", preprocess=EXACT,
                          profile="fused", preprocess_instances=2, dtype="fp32")  # fmt: skip
    root = write_repository(tmp_path / "repo", spec)
    settings = ServerSettings.on_free_ports(root, gpus=read_marker(root)["gpus"], mps="off")
    names = ["mug_500x375.jpg", "mug_gray.png", "mug_cmyk.jpg", "mug_tiny.jpg"]
    with TritonServer(settings, log_path=tmp_path / "log") as server, TritonClassifier(server.grpc_url) as client:
        served = client.logits([images[name] for name in names])
    transforms = pretrained_weights(arch).transforms()
    batch = torch.stack([transforms(Image.open(io.BytesIO(images[name])).convert("RGB")) for name in names])
    with torch.inference_mode():
        expected = loaded.model(batch).numpy()
    relative = np.abs(served - expected).max() / np.abs(expected).max()
    print(f"GPU fused {arch} vs torchvision's transforms(): max relative logit difference {relative:.2e}")
    assert relative < 2e-2, relative  # as the ResNet-50 test: fp16 classifier + GPU resize


@needs_cuda
def test_every_gpu_instance_gives_an_image_the_same_logits_to_the_bit(tmp_path):
    # Each process picks its own cuDNN kernels where they are timed at load (issue 28: instances gave
    # one image different last bits); cuDNN's heuristics pick the same in every process.
    out = tmp_path / "rows.json"
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_determinism.py"
    command = [sys.executable, str(script), "--processes", "2", "--modes", "deterministic", "--json", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    (row,) = json.loads(out.read_text())
    assert set(row["distinct_answers"].values()) == {1}, row


def test_a_batch_the_gpu_has_no_memory_for_fails_as_unavailable_and_the_instance_serves_on():
    class Backend:  # the Python backend's module, as far as unless_out_of_memory uses it
        class TritonError:
            UNAVAILABLE = "UNAVAILABLE"

            def __init__(self, message: str, code: str):
                self.message, self.code = message, code

        class InferenceResponse:
            def __init__(self, error):
                self.error = error

    def too_big(requests):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 10.32 GiB")  # issue 30's photos

    replies = unless_out_of_memory(Backend, ["a", "b"], too_big)
    assert [(reply.error.code, reply.error.message) for reply in replies] == [("UNAVAILABLE", OUT_OF_MEMORY)] * 2
    assert unless_out_of_memory(Backend, ["a"], lambda requests: ["answered"]) == ["answered"]
