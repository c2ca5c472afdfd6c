"""Pure preprocessing: parity with torchvision, every image mode, per-image errors."""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageOps

import hostile_payloads as hp
from resnet_serve.batching import gather_images, request_errors
from resnet_serve.client import pack_images
from resnet_serve.images.preprocess import (
    EXIF_ORIENTATION,
    IMAGENET_MEAN,
    IMAGENET_STD,
    ImageError,
    PreprocessOptions,
    _draft_for_resize,
    decode_rgb,
    preprocess_batch,
    preprocess_image,
    rows_to_bytes,
)
from resnet_serve.images.reference import reference_tensor

from conftest import EXACT, encode, needs_example_photo

ONE_GREY_LEVEL = 1 / (255 * min(IMAGENET_STD))  # the largest step one 8-bit level makes after Normalize


def test_matches_torchvision_eval_transform(images):
    # Same Pillow decode and bilinear filter, same crop arithmetic. Resampling only the crop (Pillow's
    # `box`) places the filter at float coordinates, which can round a value to the neighbouring grey
    # level: measured 0.001% of values on mug.jpg, 0.1% on 500x375 images. Everything else differs by
    # float32 rounding of one fused multiply-add against torchvision's divide-then-subtract (< 1e-6).
    for name, data in images.items():
        ours = preprocess_image(data, EXACT)
        assert ours.shape == (3, 224, 224) and ours.dtype == np.float32, name
        difference = np.abs(ours - reference_tensor(data))
        assert difference.max() <= ONE_GREY_LEVEL + 1e-5, name
        assert (difference > 1e-5).mean() < 0.005, name


def test_very_wide_image_never_allocates_its_full_resize():
    wide = encode(Image.new("RGB", (200_000, 2), "red"), "PNG")  # full resize would be 25.6 M x 256 pixels
    out = preprocess_image(wide)
    assert out.shape == (3, 224, 224)
    np.testing.assert_allclose(out[0], (1 - IMAGENET_MEAN[0]) / IMAGENET_STD[0], atol=1e-5)


@needs_example_photo
def test_jpeg_draft_stays_close_to_full_decode(mug_jpeg):
    # DCT-domain downscaling keeps >= 2x the resize target; measured on mug.jpg (3361x2521): mean abs
    # difference 0.012 and max 0.70 in normalized units (about 0.7 and 41 grey levels).
    full = preprocess_image(mug_jpeg, EXACT)
    draft = preprocess_image(mug_jpeg, PreprocessOptions(jpeg_draft=True, exif_transpose=False))
    difference = np.abs(draft - full)
    assert 0 < difference.mean() < 0.02
    assert difference.max() < 1.0


def test_small_jpeg_is_not_drafted(images):
    data = images["mug_500x375.jpg"]  # under 2x the target: no DCT scaling, exact numbers
    np.testing.assert_array_equal(preprocess_image(data), preprocess_image(data, EXACT))


def test_exif_orientation_is_honoured_by_default(mug_image):
    upright = mug_image.resize((400, 300))
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 6  # stored rotated: viewers turn it 90 degrees clockwise
    stored = encode(upright.transpose(Image.Transpose.ROTATE_90), "PNG", exif=exif.tobytes())
    expected = preprocess_image(encode(upright, "PNG"))
    np.testing.assert_allclose(preprocess_image(stored), expected, atol=1e-6)
    ignored = preprocess_image(stored, PreprocessOptions(exif_transpose=False))
    assert np.abs(ignored - expected).mean() > 0.1


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty image"),
        (b"this is not an image", "not a recognised image format"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "not"),
    ],
)
def test_bad_bytes_are_clear_errors(data, message):
    with pytest.raises(ImageError, match=message):
        preprocess_image(data)


def test_truncated_jpeg_is_an_error(images):
    data = images["mug_500x375.jpg"]
    with pytest.raises(ImageError, match="truncated JPEG: no end-of-image marker"):
        preprocess_image(data[: len(data) // 2])


def test_a_jpeg_scan_cut_anywhere_and_closed_is_refused_not_filled(mug_image):
    # Above the checks' least-cost bound (about 5% of the scan) only a decode can tell; Pillow's filled the
    # rest with grey and answered (issue 28). Baseline, progressive, and a cut in the last bytes.
    picture = mug_image.resize((640, 480))
    for params in ({"quality": 90}, {"quality": 90, "progressive": True}):
        data = encode(picture, "JPEG", **params)
        for kept in (0.2, 0.6, 0.999):
            with pytest.raises(ImageError, match="truncated JPEG: premature end of data segment"):
                preprocess_image(hp.jpeg_cut_and_closed(data, kept))


def test_jpeg_pixels_are_pillows_own(mug_image):
    # libjpeg-turbo through simplejpeg gives Pillow's pixels: grey, RGB, CMYK (inverted Adobe; 4:2:0 CMYK,
    # which TurboJPEG cannot name, decoded by Pillow), progressive, EXIF-rotated, full size and drafted.
    rotated = Image.Exif()
    rotated[EXIF_ORIENTATION] = 6
    options = (PreprocessOptions(), PreprocessOptions(resize=384, crop=384), EXACT)
    for size in ((500, 375), (1999, 1001)):
        for mode, subsampling in (("RGB", 2), ("RGB", 0), ("L", 0), ("CMYK", 0), ("CMYK", 2)):
            picture = mug_image.resize(size).convert(mode)
            for params in ({}, {"progressive": True}, {"exif": rotated.tobytes()}):
                data = encode(picture, "JPEG", quality=90, subsampling=subsampling, **params)
                for option in options:
                    pillow = Image.open(io.BytesIO(data))
                    if option.jpeg_draft:
                        _draft_for_resize(pillow, option.resize)
                    pillow.load()
                    upright = ImageOps.exif_transpose(pillow) if option.exif_transpose else pillow
                    expected = np.asarray(upright.convert("RGB"))
                    assert np.array_equal(np.asarray(decode_rgb(data, option)), expected), (size, mode, params)


def test_limits_refuse_before_decoding(images):
    data = images["mug_500x375.jpg"]
    with pytest.raises(ImageError, match="exceeds the limit of 1000"):
        preprocess_image(data, PreprocessOptions(max_image_bytes=1000))
    with pytest.raises(ImageError, match="500x375 pixels exceeds"):
        preprocess_image(data, PreprocessOptions(max_pixels=500 * 375 - 1))


def test_requests_fail_alone_and_name_the_image(images):
    good, bad = images["mug_500x375.jpg"], b"garbage"
    requests = [pack_images([good]), pack_images([good, bad, good]), pack_images([bad]), np.zeros((1, 4), np.float32)]
    requests.append(pack_images([good] * 4))  # larger than the request limit
    limits = PreprocessOptions(max_request_bytes=3 * len(good))
    gathered = gather_images(requests, lambda tensor: tensor, "INPUT_0", limits)
    batch, image_errors = preprocess_batch(gathered.images)
    errors = request_errors(gathered, image_errors)
    assert errors[0] is None and batch[gathered.slices[0]].shape == (1, 3, 224, 224)
    assert errors[1].startswith("image 1: not a recognised image format")
    assert errors[2].startswith("image 0:")
    assert errors[3].startswith("INPUT_0: expected UINT8")
    assert errors[4] == f"INPUT_0: request of {4 * len(good)} bytes exceeds the limit of {3 * len(good)}"
    assert gathered.slices[4] == slice(5, 5)  # nothing of it was decoded


def test_a_served_batch_walks_each_image_structure_once(images, monkeypatch):
    import resnet_serve.batching as batching
    import resnet_serve.images.preprocess as preprocess

    walked = []
    for module in (batching, preprocess):
        real = module.inspect_image
        monkeypatch.setattr(
            module, "inspect_image", lambda data, *a, real=real, **k: walked.append(1) or real(data, *a, **k)
        )
    good = next(iter(images.values()))
    gathered = gather_images([pack_images([good, b"not an image", good])], lambda t: t, "INPUT_0", PreprocessOptions())
    batch, image_errors = preprocess_batch(gathered.images, PreprocessOptions(), infos=gathered.infos)
    assert len(walked) == 3  # the screening's walk is reused when decoding
    assert request_errors(gathered, image_errors)[0].startswith("image 1: not a recognised image format")
    np.testing.assert_array_equal(batch[0], preprocess_image(good))


def test_rows_to_bytes_checks_the_tensor():
    assert rows_to_bytes(np.array([[1, 2], [3, 0]], dtype=np.uint8)) == [b"\x01\x02", b"\x03\x00"]
    with pytest.raises(ImageError, match="UINT8"):
        rows_to_bytes(np.zeros((1, 4), dtype=np.float32))
    with pytest.raises(ImageError, match="shape"):
        rows_to_bytes(np.zeros((1, 2, 2), dtype=np.uint8))


LOW = min((0 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD, strict=True))
HIGH = max((1 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD, strict=True))


@settings(max_examples=40, deadline=None)
@given(
    width=st.integers(1, 1200),
    height=st.integers(1, 1200),
    mode=st.sampled_from(["RGB", "L", "LA", "P", "RGBA", "CMYK", "I;16", "1"]),
    fmt=st.sampled_from(["PNG", "JPEG", "JPEG progressive", "BMP", "WEBP", "GIF"]),
    seed=st.integers(0, 2**16),
)
def test_any_size_mode_and_format_gives_a_valid_tensor(width, height, mode, fmt, seed):
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    image = Image.fromarray(pixels, "RGB").convert(mode if mode != "I;16" else "L")
    if mode == "I;16":
        image = Image.fromarray(np.asarray(image).astype(np.uint16) * 257)
    try:
        data = encode(image, fmt.split()[0], **({"progressive": True} if "progressive" in fmt else {}))
    except (OSError, ValueError, KeyError):
        return  # Pillow cannot write that mode in that format: nothing to decode
    out = preprocess_image(data)
    assert out.shape == (3, 224, 224) and out.dtype == np.float32
    assert np.isfinite(out).all()
    assert out.min() >= LOW - 1e-5 and out.max() <= HIGH + 1e-5
