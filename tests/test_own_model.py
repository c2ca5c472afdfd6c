"""Your own classifier: any torchvision architecture or checkpoint, your classes and labels, the
model's own preprocessing (its model card), served end to end on a real tritonserver."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import tritonclient.http as httpclient
from PIL import Image

from resnet_serve.client import TritonClassifier, pack_images
from resnet_serve.model.build import export_checked
from resnet_serve.model.weights import WeightsError, eval_card, load_weights_file, pretrained_weights, random_model
from resnet_serve.model_card import (
    ModelCard,
    ModelCardError,
    card_path,
    describe_onnx,
    fp32_model_file,
    read_card,
    write_card,
)
from resnet_serve.repository import (
    ENSEMBLE_NAME,
    RepositoryError,
    RepositorySpec,
    read_config,
    read_marker,
    read_markers,
    write_repository,
)
from resnet_serve.server import ServerSettings, TritonServer
from test_cli import run_cli

from conftest import EXACT, tiny_onnx

# (architecture, resize, crop, interpolation) as torchvision 0.29's weights.transforms() give them.
ARCHITECTURES = [
    ("resnet50", 256, 224, "bilinear"),  # IMAGENET1K_V1, the seed's pretrained=True
    ("mobilenet_v3_large", 232, 224, "bilinear"),
    ("efficientnet_b0", 256, 224, "bicubic"),
    ("efficientnet_v2_s", 384, 384, "bilinear"),
    ("convnext_tiny", 236, 224, "bilinear"),
    ("swin_t", 232, 224, "bicubic"),
]
FRUITS = ("apple", "banana", "cherry", "date", "elderberry", "fig", "grape", "honeydew", "kiwi", "lemon", "mango",
          "nectarine")  # fmt: skip


@pytest.mark.parametrize(("arch", "resize", "crop", "interpolation"), ARCHITECTURES)
def test_card_takes_the_architectures_own_eval_preprocessing(arch, resize, crop, interpolation):
    card = eval_card(arch, source="test")
    assert (card.resize, card.input_size, card.interpolation) == (resize, crop, interpolation)
    transforms = pretrained_weights(arch).transforms()
    assert (list(card.mean), list(card.std)) == (list(transforms.mean), list(transforms.std))


def test_card_round_trips_and_is_shared_by_the_files_of_one_export(tmp_path):
    card = ModelCard(arch="resnet18", num_classes=12, labels=FRUITS, resize=240, interpolation="bicubic", weights="w")
    onnx = tmp_path / "mine.onnx"
    write_card(onnx, card)
    assert card_path(onnx) == tmp_path / "mine.json"
    for sibling in ("mine.onnx", "mine.int8.onnx", "mine.pt", "mine.xml"):
        assert read_card(tmp_path / sibling) == card
    assert fp32_model_file(tmp_path / "mine.int8.onnx") == onnx
    assert read_card(tmp_path / "other.onnx") is None


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"num_classes": 12, "labels": ("a", "b")}, "2 labels for 12 classes"),
        ({"resize": 200}, "resize (200) must be at least the input size (224)"),
        ({"interpolation": "nearest"}, "interpolation must be one of bilinear, bicubic, got 'nearest'"),
        ({"std": (0.2, 0.0, 0.2)}, "std values are for pixels scaled to 0-1, so 0.001 to 1"),
        ({"std": (1e-30, 1, 1)}, "so 0.001 to 1, got [1e-30, 1, 1]"),
        ({"mean": (float("nan"), 0.4, 0.4)}, "mean values are for pixels scaled to 0-1, so 0 to 1, got [nan"),
        ({"mean": (120, 110, 100)}, "so 0 to 1, got [120, 110, 100]"),  # ImageNet's on 0-255: served garbage
        ({"resize": 100_000_000}, "resize must be at most 4096 pixels"),
        ({"num_classes": 0}, "1 or more, got 0"),
    ],
)
def test_cards_no_image_could_be_fed_with_are_refused(values, message):
    with pytest.raises(ModelCardError, match=re.escape(message)):
        ModelCard(**values)


def test_a_model_of_other_classes_without_labels_gets_numbered_ones():
    assert ModelCard(num_classes=3).class_labels == ("class 0", "class 1", "class 2")
    assert ModelCard().class_labels[504] == "COFFEE MUG"  # 1000 classes: ImageNet's, as the seed's


def test_a_checkpoint_of_other_classes_names_the_option_that_fits_it(tmp_path):
    path = tmp_path / "my10.pt"
    torch.save(random_model("resnet18", 10).model.state_dict(), path)
    with pytest.raises(WeightsError, match=r"fc.weight is \[10, 512\] in the file.*pass --num-classes 10"):
        load_weights_file(path, "resnet18")
    with pytest.raises(WeightsError, match="is it a resnet50 checkpoint"):
        load_weights_file(path, "resnet50", 10)
    assert load_weights_file(path, "resnet18", 10).card.num_classes == 10


def test_an_onnx_file_whose_output_does_not_fit_its_card_is_refused_in_one_line(tmp_path):
    ten = tiny_onnx(tmp_path / "my10.onnx", classes=10)
    with pytest.raises(ModelCardError, match="gives 10 classes, but it is described with 1000") as caught:
        write_repository(tmp_path / "repo", RepositorySpec(model_file=ten))
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "repo").exists()  # refused before anything was written


def test_an_onnx_file_that_does_not_take_images_is_refused(tmp_path):
    gray = tiny_onnx(tmp_path / "gray.onnx", channels=1)
    with pytest.raises(ModelCardError, match=r"takes input \[N, 1, 224, 224\]; expected \[N, 3, S, S\]"):
        describe_onnx(gray)
    with pytest.raises(ModelCardError, match=r"expected \[N, 3, 224, 224\]"):
        write_repository(tmp_path / "repo", RepositorySpec(model_file=gray))


def test_a_repository_is_a_snapshot_of_the_model_it_was_written_from(tmp_path):
    model_file = tiny_onnx(tmp_path / "model.onnx")
    root = write_repository(tmp_path / "repo", RepositorySpec(model_file=model_file))
    served = root / "resnet50_ort" / "1" / "model.onnx"
    before = served.read_bytes()
    tiny_onnx(tmp_path / "scratch.onnx", classes=1000, size=224).replace(model_file)  # as export's rename does
    with open(model_file, "r+b") as stream:  # and as an in-place rewrite would
        stream.write(b"\0" * 16)
    assert served.read_bytes() == before
    marker = read_marker(root)
    assert len(marker["model"]["sha256"]) == 64 and "no card" in marker["model"]["weights"]


def test_export_describes_an_onnx_model_made_elsewhere_and_repo_serves_its_shape(tmp_path):
    ten = tiny_onnx(tmp_path / "my10.onnx", classes=10, size=192)
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(FRUITS[:10]) + "\n")
    result = run_cli("export", "--onnx", str(ten), "--labels", str(labels), "--interpolation", "bicubic")
    assert result.returncode == 0, result.stderr
    card = read_card(ten)
    assert (card.num_classes, card.input_size, card.resize, card.interpolation) == (10, 192, 219, "bicubic")
    root = write_repository(tmp_path / "repo", RepositorySpec(model_file=ten))
    assert (root / "onnx_ort").is_dir()  # the classifier step says what it runs: <arch>_<runtime>
    assert list(read_config(root / ENSEMBLE_NAME / "config.pbtxt").output[0].dims) == [10]
    assert (root / ENSEMBLE_NAME / "labels.txt").read_text().splitlines() == list(FRUITS[:10])
    preprocess = read_config(root / "preprocess" / "config.pbtxt")
    assert list(preprocess.output[0].dims) == [3, 192, 192]
    assert preprocess.parameters["interpolation"].string_value == "bicubic"
    again = run_cli("export", "--onnx", str(ten))  # replaced the card with ImageNet's defaults, in silence
    assert again.returncode == 1 and "already has a card" in again.stderr and "delete it first" in again.stderr
    assert read_card(ten) == card


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--arch", "resnet5O"], "unknown architecture 'resnet5O'"),
        (["--num-classes", "12", "--labels", "LABELS3"], "has 3 lines for --num-classes 12"),
        (["--onnx", "ONNX10", "--num-classes", "12"], "gives 10 classes, not 12"),
        (["--onnx", "ONNX10", "--labels", "LABELS3"], "3 labels for the 10 classes"),
        (["--random-weights", "--mean", "0.5,0.5"], "expected three numbers R,G,B"),
    ],
)
def test_export_mistakes_get_one_line(tmp_path, args, message):
    three = tmp_path / "three.txt"
    three.write_text("a\nb\nc\n")
    ten = tiny_onnx(tmp_path / "ten.onnx", classes=10)
    output = [] if "--onnx" in args else ["-o", str(tmp_path / "out.onnx")]
    args = [str(three) if a == "LABELS3" else str(ten) if a == "ONNX10" else a for a in args]
    result = run_cli("export", *args, *output)
    assert result.returncode in (1, 2) and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def awkward_images(images: dict[str, bytes]) -> list[bytes]:
    """The inputs the served tests use everywhere: sizes, grey, CMYK, alpha, palette, smaller than the crop."""
    names = ["mug_500x375.jpg", "mug_portrait.png", "mug_gray.png", "mug_cmyk.jpg", "mug_rgba.png",
             "mug_palette.png", "mug_tiny.jpg"]  # fmt: skip
    return [images[name] for name in names]


def torchvision_logits(arch: str, model: torch.nn.Module, images: list[bytes]) -> np.ndarray:
    """torchvision's own ``weights.transforms()`` of ``arch`` and the model, in process: the ground truth."""
    transforms = pretrained_weights(arch).transforms()
    batch = torch.stack([transforms(Image.open(io.BytesIO(data)).convert("RGB")) for data in images])
    with torch.inference_mode():
        return model(batch).numpy()


@pytest.mark.server
@pytest.mark.parametrize("arch", [arch for arch, *_ in ARCHITECTURES if arch not in ("resnet50", "swin_t")])
def test_served_logits_equal_torchvision_for_each_architecture(arch, images, tmp_path):
    # resnet50 is test_server.py's model; swin_t's card is checked above (its export is the slowest).
    loaded = random_model(arch)
    onnx = tmp_path / f"{arch}.onnx"
    export_checked(loaded, onnx, [], opset=18)
    spec = RepositorySpec(model_file=onnx, classifier="openvino", precision="fp32", preprocess=EXACT)
    root = write_repository(tmp_path / "repo", spec)
    assert (root / f"{arch}_openvino").is_dir()  # not resnet50_openvino: the step is named after what it runs
    sent = awkward_images(images)
    with TritonServer(ServerSettings.on_free_ports(root), log_path=tmp_path / "triton.log") as server:
        client = TritonClassifier(server.grpc_url)
        served = np.concatenate([client.logits([image]) for image in sent])
        client.close()
    expected = torchvision_logits(arch, loaded.model, sent)
    # Relative to the logits' own scale: randomly initialised EfficientNets and MobileNets give logits
    # of 1e-14 to 1e-6 (ResNet-50 ~60), so an absolute bound would hold whatever was served. The gap is
    # our preprocessing's one-grey-level roundings (<= 0.0175 normalized, as test_preprocess.py bounds),
    # which these networks carry into the logits; measured in process with torch on both sides (no
    # server), largest relative difference on these seven inputs, from the example's photo / from the
    # tests' synthetic one: convnext_tiny 7.6e-4 / 1.45e-3, efficientnet_b0 1.5e-4 / 2.7e-4,
    # mobilenet_v3_large 1.4e-4 / 2.0e-4, resnet50 3.7e-5 / 3.7e-5. What the bound must catch, same
    # measurement: the other filter (bilinear for bicubic or back) 8.3e-3 to 9.4e-3, another resize
    # (256 for 236) 0.22 to 0.34. The runtimes' own differences (~1e-5) are below all of these.
    relative = np.abs(served - expected).max() / np.abs(expected).max()
    assert relative < 3e-3, relative
    assert np.array_equal(served.argmax(1), expected.argmax(1))


@pytest.fixture(scope="module")
def fruit_model(tmp_path_factory, images) -> Path:
    """A 12-class ResNet-18 as a user fine-tunes one: its checkpoint and labels, exported by the CLI
    with an int8 model calibrated on a few images."""
    work = tmp_path_factory.mktemp("fruit")
    torch.save({"epoch": 3, "state_dict": random_model("resnet18", 12).model.state_dict()}, work / "fruit.pt")
    (work / "labels.txt").write_text("\n".join(FRUITS) + "\n")
    calibration = work / "calibration"
    calibration.mkdir()
    for name, data in images.items():
        (calibration / name).write_bytes(data)
    result = run_cli("export", "--arch", "resnet18", "--weights", str(work / "fruit.pt"), "--labels",
                     str(work / "labels.txt"), "-o", str(work / "fruit.onnx"), "--int8", "--calibration",
                     str(calibration))  # fmt: skip
    assert result.returncode == 0, result.stderr
    return work / "fruit.onnx"


@pytest.mark.server
@pytest.mark.parametrize("precision", ["auto", "int8"])
def test_your_classifier_end_to_end_prints_your_labels(fruit_model, precision, images, tmp_path):
    model_file = fruit_model.with_name("fruit.int8.onnx") if precision == "int8" else fruit_model
    root = tmp_path / "repo"
    result = run_cli("repo", "--onnx", str(model_file), "--precision", precision, "-o", str(root))
    assert result.returncode == 0, result.stderr
    assert json.loads(card_path(fruit_model).read_text())["labels"] == list(FRUITS)
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(images["mug_500x375.jpg"])
    with TritonServer(ServerSettings.on_free_ports(root), log_path=tmp_path / "triton.log") as server:
        shown = run_cli("classify", str(photo), "--url", server.grpc_url, "--top-k", "3", "--json")
        assert shown.returncode == 0, shown.stderr
        top = json.loads(shown.stdout)["images"][0]["top"]
        assert len(top) == 3 and all(entry["label"] == FRUITS[entry["index"]] for entry in top)
        assert abs(sum(entry["probability"] for entry in top) - 1) < 1  # softmax over 12 classes, not 1000
        client = httpclient.InferenceServerClient(server.http_url)
        image = httpclient.InferInput("INPUT", [1, len(images["mug_500x375.jpg"])], "UINT8")
        image.set_data_from_numpy(pack_images([images["mug_500x375.jpg"]]))
        output = httpclient.InferRequestedOutput("OUTPUT", class_count=3)
        answer = client.infer(ENSEMBLE_NAME, [image], outputs=[output]).as_numpy("OUTPUT")
        assert [entry.decode().split(":", 2)[2] for entry in answer[0]] == [entry["label"] for entry in top]
        assert client.get_model_metadata(ENSEMBLE_NAME)["outputs"][0]["shape"] == [-1, 12]


def test_a_model_name_must_be_a_plain_directory_name(tmp_path):
    for bad in ("../up", "a/b", "", ".hidden"):
        with pytest.raises(RepositoryError, match="a model name is letters"):
            RepositorySpec(model_file=tmp_path / "m.onnx", name=bad)


def test_models_of_other_names_stay_when_one_is_written_again(tmp_path):
    root = tmp_path / "repo"
    write_repository(root, RepositorySpec(model_file=tiny_onnx(tmp_path / "seed.onnx")))
    ten = tiny_onnx(tmp_path / "ten.onnx", classes=10)
    write_card(ten, describe_onnx(ten))
    write_repository(root, RepositorySpec(model_file=ten, name="ten", classifier="openvino"))
    (root / "leftover").mkdir()
    write_repository(root, RepositorySpec(model_file=tiny_onnx(tmp_path / "seed.onnx")))  # the default again
    assert sorted(read_markers(root)) == [ENSEMBLE_NAME, "ten"]
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == sorted(
        [ENSEMBLE_NAME, "preprocess", "resnet50_ort", "ten", "ten_preprocess", "ten_openvino"]
    )
    assert list(read_config(root / "ten" / "config.pbtxt").output[0].dims) == [10]
    assert read_config(root / "ten" / "config.pbtxt").ensemble_scheduling.step[1].model_name == "ten_openvino"


@pytest.mark.server
def test_two_models_in_one_server_answer_under_their_own_names(fruit_model, onnx_model, model, images, tmp_path):
    import tritonclient.grpc as grpcclient

    from conftest import reference_logits

    root = tmp_path / "repo"
    write_repository(root, RepositorySpec(model_file=onnx_model, preprocess=EXACT))
    result = run_cli("repo", "--onnx", str(fruit_model), "--name", "fruit", "-o", str(root))
    assert result.returncode == 0, result.stderr
    photo = images["mug_500x375.jpg"]
    settings = ServerSettings.on_free_ports(root, models=tuple(read_markers(root)))
    with TritonServer(settings, log_path=tmp_path / "triton.log") as server:
        # The example's client.py, unchanged, against the default model: INPUT alone, OUTPUT read back.
        client = grpcclient.InferenceServerClient(server.grpc_url)
        sent = grpcclient.InferInput("INPUT", [1, len(photo)], "UINT8")
        sent.set_data_from_numpy(np.frombuffer(photo, np.uint8)[None])
        answer = client.infer(ENSEMBLE_NAME, [sent], outputs=[grpcclient.InferRequestedOutput("OUTPUT")])
        np.testing.assert_allclose(answer.as_numpy("OUTPUT"), reference_logits(model, [photo]), rtol=0, atol=5e-3)
        with TritonClassifier(server.grpc_url, model="fruit") as fruit:
            (top,), _ = fruit.classify([photo], k=12)
            assert sorted(p.label for p in top) == sorted(FRUITS)
            assert fruit.logits([photo]).shape == (1, 12)


@pytest.mark.server
def test_the_fused_cpu_profile_serves_in_one_model_what_the_two_steps_serve(onnx_model, model, images, tmp_path):
    from conftest import reference_logits

    spec = RepositorySpec(model_file=onnx_model, classifier="openvino", precision="fp32", preprocess=EXACT,
                          profile="fused")  # fmt: skip
    root = write_repository(tmp_path / "repo", spec)
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == [ENSEMBLE_NAME]
    sent = awkward_images(images)
    with TritonServer(ServerSettings.on_free_ports(root), log_path=tmp_path / "triton.log") as server:
        with TritonClassifier(server.grpc_url) as client:
            served = client.logits(sent)
            one = client.logits([sent[0]])
            with pytest.raises(Exception, match="image 1: not a recognised image format"):
                client.logits([sent[0], b"junk"])
            (top,), _ = client.classify([sent[0]], k=3)  # labels from the fused model's own config
        assert len(server.stub_pids()) == 2  # its two instances; no preprocess or classifier step
    np.testing.assert_allclose(served, reference_logits(model, sent), rtol=0, atol=5e-3)
    np.testing.assert_allclose(one[0], served[0], rtol=0, atol=1e-4)
    assert [p.index for p in top] == list(np.argsort(-served[0])[:3])


def test_the_fused_profile_is_refused_for_classifiers_that_have_none(tmp_path):
    with pytest.raises(RepositoryError, match="the fused profile runs the openvino or torch classifier, not ort"):
        RepositorySpec(model_file=tmp_path / "m.onnx", classifier="ort", profile="fused")
