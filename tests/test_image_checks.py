"""Checks before decoding (images.checks) and the request screening built on them (batching)."""

from __future__ import annotations

import gc
import io
import sys

import numpy as np
import pytest
from PIL import Image

import hostile_payloads as hp
from resnet_serve.batching import checked_lengths, gather_images, gather_requests, request_errors
from resnet_serve.client import image_lengths, pack_images
from resnet_serve.images import checks as image_checks
from resnet_serve.images.checks import ImageError, check_pixels, check_rows_filled, decoded_pixels, inspect_image
from resnet_serve.images.preprocess import (
    EXIF_ORIENTATION,
    DecodeBudget,
    PreprocessOptions,
    exif_orientation,
    open_checked,
    opens_plain,
    preprocess_batch,
    preprocess_image,
    rows_to_bytes,
)

from conftest import needs_example_photo

FORMAT_OF = {"jpeg": "JPEG", "png": "PNG", "apng": "PNG", "gif": "GIF", "webp": "WEBP", "bmp": "BMP"}


@pytest.fixture(scope="module")
def bases(mug_image) -> dict[str, bytes]:
    return hp.base_images(mug_image)


def test_every_allowed_format_is_read_to_its_end(bases):
    for name, data in bases.items():
        info = inspect_image(data)
        assert info.format == FORMAT_OF[name.split("_")[0]] and info.end == len(data), name
        assert info.size == (160, 120), name
        assert inspect_image(data + b"\x00" * 100).end == len(data)  # trailing zeros are not the image's


@pytest.mark.parametrize("name", ["jpeg", "jpeg_progressive", "png", "apng", "gif", "gif_animated", "webp", "bmp"])
def test_a_file_cut_anywhere_is_refused_as_truncated(bases, name):
    data = bases[name]
    for cut in range(1, len(data), max(1, len(data) // 997)):
        with pytest.raises(ImageError, match=r"truncated|corrupt|not a recognised|invalid"):
            inspect_image(data[:cut])
    with pytest.raises(ImageError, match=f"truncated {FORMAT_OF[name.split('_')[0]]}"):
        inspect_image(data[:-1])


@pytest.mark.parametrize(
    ("name", "cut", "message"),
    [
        ("jpeg", -2, "truncated JPEG: no end-of-image marker"),
        ("png", -1, "truncated PNG: chunk 'IEND' at byte"),
        ("gif", -1, "truncated GIF: no trailer"),
        ("webp", -1, "truncated WEBP: the RIFF header needs"),
        ("bmp", -1, r"truncated BMP: pixel data of 160x120 at 24 bits needs 57654 bytes, got 57653"),
    ],
)
def test_each_format_says_what_is_missing(bases, name, cut, message):
    with pytest.raises(ImageError, match=message):
        inspect_image(bases[name][:cut])


def test_a_corrupt_png_chunk_fails_its_crc(bases):
    data = bytearray(bases["png"])
    data[33 + 8 + 10] ^= 0x01  # inside the first IDAT's data
    with pytest.raises(ImageError, match="corrupt PNG: CRC mismatch in chunk 'IDAT'"):
        inspect_image(bytes(data))


def _segment(jpeg: bytes, marker: int) -> int:
    """Where the first segment ``0xff<marker>`` of a baseline JPEG starts."""
    return jpeg.index(bytes([0xFF, marker]))


def _patched(data: bytes, offset: int, value: int) -> bytes:
    return data[:offset] + bytes([value]) + data[offset + 1 :]


def test_jpeg_tables_libjpeg_refuses_are_refused_before_any_decoder(bases):
    # Bit flips found on the GPU (issue 16): nvJPEG decoded these while Pillow's libjpeg refused them.
    jpeg = bases["jpeg"]
    frame, huffman, scan = _segment(jpeg, 0xC0), _segment(jpeg, 0xC4), _segment(jpeg, 0xDA)
    broken = {
        "sampling factors": _patched(jpeg, frame + 11, 0x51),  # first component: 5x1 (1 to 4 allowed)
        "Huffman table definition": _patched(jpeg, huffman + 5, 0xFF),  # 255 codes of length 1
        "marker length": _patched(jpeg, scan + 3, jpeg[scan + 3] + 2),  # scan header 2 bytes longer
    }
    for what, data in broken.items():
        with pytest.raises(ImageError, match=f"corrupt JPEG: bogus {what}"):
            inspect_image(data)
        _, (error,) = preprocess_batch([data])
        assert error is not None, what  # and libjpeg refuses it too: the check only moves the refusal earlier


def test_remembered_table_checks_answer_the_same_bytes_the_same_way(bases):
    jpeg = bases["jpeg"]
    huffman = _segment(jpeg, 0xC4)
    good_body = jpeg[huffman + 4 : huffman + 2 + int.from_bytes(jpeg[huffman + 2 : huffman + 4], "big")]
    bad = _patched(jpeg, huffman + 5, 0xFF)  # 255 codes of length 1
    image_checks._remembered_table_problem.cache_clear()
    for data in (jpeg, bad, jpeg, bad):  # the second time each answer comes from the remembered check
        if data is bad:
            with pytest.raises(ImageError, match="bogus Huffman table definition"):
                inspect_image(data)
        else:
            assert inspect_image(data).format == "JPEG"
    assert image_checks._remembered_table_problem.cache_info().hits > 0

    def with_tables(body: bytes) -> bytes:  # one more DHT segment before the scan (tables may be redefined)
        scan = _segment(jpeg, 0xDA)
        return jpeg[:scan] + b"\xff\xc4" + (len(body) + 2).to_bytes(2, "big") + body + jpeg[scan:]

    large = good_body * (2049 // len(good_body) + 1)  # over the size whose answers are remembered
    remembered = image_checks._remembered_table_problem.cache_info().currsize
    assert inspect_image(with_tables(large)).format == "JPEG"
    assert image_checks._remembered_table_problem.cache_info().currsize == remembered  # memory stays bounded
    broken_large = large[: -len(good_body)] + bytes([good_body[0], 0xFF]) + good_body[2:]
    with pytest.raises(ImageError, match="bogus Huffman table definition"):
        inspect_image(with_tables(broken_large))


def _with_segment(jpeg: bytes, marker: int, body: bytes) -> bytes:
    """``jpeg`` with one more segment right after SOI."""
    return jpeg[:2] + bytes([0xFF, marker]) + (len(body) + 2).to_bytes(2, "big") + body + jpeg[2:]


def _with_rgb_component_ids(jpeg: bytes) -> bytes:
    """``jpeg`` (3 components) with component ids R, G, B in its frame and scan headers."""
    data = bytearray(jpeg)
    frame, scan = _segment(jpeg, 0xC0), _segment(jpeg, 0xDA)
    for index, component in enumerate(b"RGB"):
        data[frame + 10 + 3 * index] = component
        data[scan + 5 + 2 * index] = component
    return bytes(data)


def _pillow_header(data: bytes) -> tuple[str, tuple[int, int], int] | None:
    """What Pillow's header parse finds (mode, size, EXIF orientation), None where it refuses."""
    try:
        image = open_checked(data)
    except ImageError:
        return None
    return image.mode, image.size, exif_orientation(image)


def test_plain_jpegs_are_ones_pillow_opens_upright_in_grey_or_rgb(bases):
    # The GPU path skips Pillow's header parse for plain JPEGs (preprocess.opens_plain), so plainness
    # must imply what that parse would find. Checked against Pillow itself, on header bit flips too.
    jpegs = {name: data for name, data in bases.items() if name.startswith("jpeg")}
    assert all(inspect_image(data).plain for data in jpegs.values())
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 6
    jpeg = jpegs["jpeg"]
    frame = _segment(jpeg, 0xC0)
    not_plain = {
        "EXIF": _with_segment(jpeg, 0xE1, b"Exif\x00\x00" + exif.tobytes()),
        "ICC profile": _with_segment(jpeg, 0xE2, b"ICC_PROFILE\x00\x01\x01" + bytes(128)),
        "Adobe": _with_segment(jpeg, 0xEE, b"Adobe\x00\x64\x00\x00\x00\x00\x00"),
        "short JFIF": _with_segment(jpeg, 0xE0, b"JFIF\x00"),
        "12-bit": _patched(jpeg, frame + 4, 12),
        "CMYK": hp.encode(Image.new("CMYK", (40, 30), (10, 20, 30, 40)), "JPEG"),
    }
    second_frame = jpegs["jpeg_gray"][_segment(jpegs["jpeg_gray"], 0xC0) :]
    rgb_ids = _with_rgb_component_ids(jpeg)
    not_plain |= {
        "a second frame after the scan": jpeg[:-2] + second_frame,  # libjpeg refuses; Pillow's header parse not
        "RGB component ids, APP0 not JFIF\\0": rgb_ids[:10] + b"\x01" + rgb_ids[11:],  # libjpeg: RGB, no transform
    }
    for what, data in not_plain.items():
        assert not inspect_image(data).plain, what
    plain = {  # segments a decoder does not read, or reads as tables
        "comment": _with_segment(jpeg, 0xFE, b"made by a test \xff\xff"),
        "APP3": _with_segment(jpeg, 0xE3, b"anything"),
        "restart interval": jpeg[:frame] + b"\xff\xdd\x00\x04\x00\x00" + jpeg[frame:],
        "RGB component ids with JFIF": rgb_ids,  # JFIF says YCbCr, for libjpeg too
    }
    for what, data in plain.items():
        info = inspect_image(data)
        assert info.plain and _pillow_header(data) == ("RGB", info.size, 1), what
    rng = np.random.default_rng(19)
    checked = 0
    for index in range(3000):
        base = list(jpegs.values())[index % len(jpegs)]
        header_end = base.index(b"\xff\xda") + 14
        flipped = bytearray(base)
        for position in rng.integers(2, header_end, int(rng.integers(1, 4))):
            flipped[position] ^= 1 << int(rng.integers(0, 8))
        try:
            info = inspect_image(bytes(flipped))
        except ImageError:
            continue
        if info.plain:
            checked += 1
            found = _pillow_header(bytes(flipped))
            assert found is not None and found[0] in ("L", "RGB") and found[1:] == (info.size, 1), bytes(flipped)
    assert checked > 100  # enough survivors to mean something


def test_a_plain_jpeg_over_pillows_bomb_limit_is_left_to_pillow(bases, monkeypatch):
    info = inspect_image(bases["jpeg"])
    assert opens_plain(info)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", info.size[0] * info.size[1] // 4)
    assert not opens_plain(info)
    with pytest.raises(ImageError, match="decompression bomb refused"):
        open_checked(bases["jpeg"])


def test_formats_outside_the_allow_list_are_refused(mug_image):
    small = mug_image.resize((64, 48))
    for fmt in ("PPM", "TGA", "PCX"):
        with pytest.raises(ImageError, match=r"not a recognised image format \(allowed: JPEG, PNG, WEBP, GIF, BMP\)"):
            preprocess_image(hp.encode(small, fmt))
    for fmt in ("TIFF", "ICO"):  # known, and refused by name: the user learns it is no accident
        with pytest.raises(
            ImageError, match=rf"{fmt} is refused on purpose: .* \(allowed: JPEG, PNG, WEBP, GIF, BMP\)"
        ):
            preprocess_image(hp.encode(small, fmt))


@needs_example_photo  # a picture of other content may end its WebP data in zeros, which this refuses
def test_zeros_that_may_be_padding_never_stand_in_for_bmp_or_webp_data(bases):
    for name in ("bmp", "webp", "webp_lossless"):
        data = bases[name]
        padded = data[: len(data) - 40] + b"\x00" * 200  # cut off, then padded past its declared size
        inspect_image(data + b"\x00" * 200, may_be_padded=True)  # complete: fine
        with pytest.raises(ImageError, match="may be padding; send INPUT_LENGTHS"):
            inspect_image(padded, may_be_padded=True)
    for name in ("jpeg", "png", "gif"):  # end markers: padding never completes them
        with pytest.raises(ImageError, match=r"truncated|corrupt PNG: CRC mismatch|corrupt GIF: unexpected block 0x00"):
            inspect_image(bases[name][:-40] + b"\x00" * 200, may_be_padded=True)


def test_every_frame_and_embedded_header_counts_against_the_pixel_limit(bases):
    cases = {
        "GIF frame": hp.gif_with_frame(20_000, 20_000),
        "APNG frame": hp._apng_with_frame(bases["png"], 20_000, 20_000),
        "WebP canvas": hp.webp_canvas((16_000, 16_000), bases["webp"]),
        "WebP bitstream in a small canvas": hp.webp_canvas((16, 16), hp.webp_lossless(16_000, 16_000)),
    }
    for what, data in cases.items():
        info = inspect_image(data)
        with pytest.raises(ImageError, match=r"(20000x20000|16000x16000) pixels exceeds the limit of 100000000"):
            check_pixels(info, 100_000_000)
        with pytest.raises(ImageError, match="exceeds the limit"):
            preprocess_image(data)
        assert what


def test_headers_declaring_more_than_their_data_holds_are_refused(bases):
    with pytest.raises(ImageError, match=r"truncated JPEG: \d+ bytes of scan data cannot hold the 282000 blocks"):
        inspect_image(hp.jpeg_with_size(bases["jpeg"], 4000, 3000))
    with pytest.raises(ImageError, match="truncated PNG: 12 bytes of image data cannot inflate to the 36000 bytes"):
        inspect_image(hp.png_declaring(1, 9000))


def test_a_jpeg_scan_cut_below_its_tables_least_cost_and_closed_is_refused(mug_image):
    # Each block costs at least a DC code and an end-of-block code under the file's own tables.
    for params in ({"quality": 90}, {"quality": 75, "optimize": True}, {"quality": 85, "progressive": True}):
        data = hp.encode(mug_image, "JPEG", **params)
        assert inspect_image(data).end == len(data)
        with pytest.raises(ImageError, match=r"truncated JPEG: .*\(its Huffman tables need at least"):
            inspect_image(hp.jpeg_cut_and_closed(data, 0.02))


def test_a_progressive_jpeg_whose_scans_never_give_a_component_its_values_is_refused(bases):
    # libjpeg would leave those components at zero and say nothing.
    with pytest.raises(ImageError, match=r"truncated JPEG: no scan holds component\(s\) \[1, 2, 3\] of its frame"):
        inspect_image(hp.jpeg_without_its_first_scan(bases["jpeg_progressive"]))


def test_a_png_whose_complete_stream_fills_a_tenth_of_its_rows_is_refused(mug_image):
    short = hp.png_short_rows(200, 100)
    info = inspect_image(short)  # well-formed, and its bytes could inflate that far
    with pytest.raises(ImageError, match=r"truncated PNG: image data inflates to 6010 bytes, its size declares 60100"):
        check_rows_filled(short, info)
    with pytest.raises(ImageError, match="truncated PNG"):
        preprocess_image(short)
    full = hp.encode(mug_image.resize((200, 100)), "PNG")
    for png in (full, hp.encode(mug_image.resize((37, 23)), "PNG", interlace=1), hp.png_bomb(300, 200)):
        check_rows_filled(png, inspect_image(png))  # complete: interlaced, grey, and 1000:1 zeros alike


def test_arithmetic_jpeg_and_run_length_bmp_are_refused_on_purpose(bases):
    with pytest.raises(ImageError, match="arithmetic-coded JPEG is refused on purpose"):
        inspect_image(hp.arithmetic_jpeg(bases["jpeg"]))
    with pytest.raises(ImageError, match="run-length BMP is refused on purpose"):
        inspect_image(hp.rle_bmp())


def test_webp_frames_nested_deeper_than_pythons_stack_are_walked_and_counted(bases):
    data = hp.webp_nested(bases["webp"], depth=3_000, width=16_385)
    assert sys.getrecursionlimit() < 3_000
    info = inspect_image(data)
    assert len(info.frames) == 3_001 and (16_385, 16) in info.frames
    with pytest.raises(ImageError, match="16385x16 pixels exceeds the limit of 100000"):
        check_pixels(info, 100_000)


def test_files_of_countless_tiny_segments_are_refused_before_the_walk_gets_slow(bases):
    jpeg = bases["jpeg"]
    with pytest.raises(ImageError, match="more than 4096 marker segments"):
        inspect_image(hp.jpeg_of_comments(jpeg, 200_000))
    png = bases["png"]
    empty_chunks = png[:33] + hp.png_chunk(b"teXt", b"") * 100_000 + png[33:]
    with pytest.raises(ImageError, match=r"corrupt PNG: more than \d+ chunks or blocks"):
        inspect_image(empty_chunks)
    gif = hp.gif_with_frame(1, 1)
    one_byte_blocks = gif[:-1] + b"\x21\xfe" + b"\x01\x20" * 200_000 + b"\x00" + gif[-1:]
    with pytest.raises(ImageError, match=r"corrupt GIF: more than \d+ chunks or blocks"):
        inspect_image(one_byte_blocks)
    fills = jpeg[:2] + b"\xff" * 5_000_000 + jpeg[3:]  # fill bytes before a marker: skipped in one step
    assert inspect_image(fills).end == len(fills)


def test_a_jpeg_of_several_scans_counts_at_full_size_in_the_decoded_pixels(mug_image):
    # libjpeg keeps every coefficient of a multi-scan JPEG whatever its output scale.
    progressive = inspect_image(hp.encode(mug_image, "JPEG", progressive=True))
    baseline = inspect_image(hp.encode(mug_image, "JPEG"))
    width, height = mug_image.size
    assert progressive.buffered and not baseline.buffered
    assert decoded_pixels(progressive, 112, jpeg_draft=True) == width * height
    assert decoded_pixels(baseline, 112, jpeg_draft=True) < width * height


def test_any_exception_checking_or_decoding_an_image_fails_that_image_alone(images, bases, monkeypatch):
    import resnet_serve.batching as batching
    import resnet_serve.images.preprocess as preprocess

    real_inspect, real_decode = batching.inspect_image, preprocess.decode_rgb

    def inspect(data, **kwargs):  # stands in for a walk that runs out of stack (issue 28)
        if data.endswith(b"CHECK"):
            raise RecursionError("maximum recursion depth exceeded in /srv/secret/path.py")
        return real_inspect(data, **kwargs)

    def decode(data, *args):  # stands in for a decoder's own failure
        if data.startswith(b"\x89PNG"):
            raise MemoryError("/srv/secret/path.py")
        return real_decode(data, *args)

    monkeypatch.setattr(batching, "inspect_image", inspect)
    monkeypatch.setattr(preprocess, "decode_rgb", decode)
    good = images["mug.jpg"]
    _, errors = screen([([good], True), ([good + b"CHECK"], True), ([good, bases["png"]], True), ([good], True)])
    assert errors == [
        None,
        "image 0: could not be decoded (RecursionError)",
        "image 1: could not be decoded (MemoryError)",
        None,
    ]


@pytest.mark.parametrize("mode", ["1", "L", "RGB"])
def test_flat_images_compress_within_the_bounds(mode):
    # The bounds are the formats' best cases (1 bit per JPEG block, deflate's 1032:1): black images pass.
    smallest = {"PNG": {"compress_level": 9}, "JPEG": {"quality": 1, "optimize": True, "progressive": True}}
    for fmt, params in smallest.items():
        if fmt == "JPEG" and mode == "1":
            continue
        data = hp.encode(Image.new(mode, (4000, 3000)), fmt, **params)
        assert inspect_image(data).end == len(data)


def test_decoded_pixels_follow_pillows_jpeg_draft(mug_jpeg, bases):
    info = inspect_image(mug_jpeg)
    image = Image.open(io.BytesIO(mug_jpeg))
    width, height = image.size
    scale = 2 * 256 / min(width, height)
    image.draft("RGB", (round(width * scale), round(height * scale)))
    assert decoded_pixels(info, 256, jpeg_draft=True) == image.size[0] * image.size[1] < width * height
    assert decoded_pixels(info, 256, jpeg_draft=False) == width * height
    assert decoded_pixels(inspect_image(bases["png"]), 256, jpeg_draft=True) == 160 * 120


@pytest.mark.filterwarnings("ignore:(Truncated File Read|Corrupt EXIF data):UserWarning")
def test_exif_orientation_that_is_not_an_integer_counts_as_upright(mug_image):
    for name, data in hp.odd_exif(mug_image):
        assert exif_orientation(Image.open(io.BytesIO(data))) == 1, name
        assert preprocess_image(data).shape == (3, 224, 224)


def test_lengths_cut_rows_and_bad_lengths_are_refused():
    rows = np.array([list(b"abcd"), list(b"ef\x00\x00")], np.uint8)
    assert rows_to_bytes(rows, checked_lengths(np.array([[4], [2]], np.int64), rows.shape)) == [b"abcd", b"ef"]
    for lengths, message in [
        (np.array([[4]]), r"expected 2 lengths, shape \[2, 1\], got shape \[1, 1\]"),
        (np.array([[4], [0]]), "length of image 1 must be 1 to 4 .*, got 0"),
        (np.array([[5], [2]]), "length of image 0 must be 1 to 4 .*, got 5"),
        (np.array([[4.0], [2.0]]), "expected integer lengths, got float64"),
    ]:
        with pytest.raises(ImageError, match=message):
            checked_lengths(lengths, rows.shape)


DEFAULTS = PreprocessOptions()


def screen(requests, options=DEFAULTS):
    """Gather requests given as (images, send lengths) pairs; return the requests' errors."""
    gathered = gather_images(
        [(pack_images(images), image_lengths(images) if lengths else None) for images, lengths in requests],
        lambda request: request[0],
        "INPUT",
        options,
        lambda request: request[1],
    )
    return gathered, request_errors(gathered, preprocess_batch(gathered.images, options)[1])


class FakePbUtils:
    """Stands in for the Python backend's module (only Triton's stub can import it): a request is a
    dict of its input arrays, and a tensor it did not send is None, as in the backend."""

    class Tensor:
        def __init__(self, array: np.ndarray):
            self.array = array

        def as_numpy(self) -> np.ndarray:
            return self.array

    @classmethod
    def get_input_tensor_by_name(cls, request: dict, name: str):
        return cls.Tensor(request[name]) if name in request else None


def test_gather_requests_reads_the_named_inputs_and_takes_a_request_without_lengths(images):
    mug, tiny = images["mug_500x375.jpg"], images["mug_tiny.jpg"]
    requests = [
        {"IMAGES": pack_images([mug, tiny]), "LENGTHS": image_lengths([mug, tiny])},
        {"IMAGES": pack_images([tiny])},  # the seed's client sends no lengths
        {"IMAGES": pack_images([tiny]), "LENGTHS": np.zeros((1, 1), np.int64)},
    ]
    gathered = gather_requests(FakePbUtils, requests, "IMAGES", "LENGTHS", DEFAULTS)
    assert gathered.images == [mug, tiny, tiny] and gathered.slices == [slice(0, 2), slice(2, 3), slice(3, 3)]
    assert list(gathered.bad_input) == [2] and gathered.bad_input[2].startswith("LENGTHS: "), gathered.bad_input


def test_padding_is_never_decoded_with_or_without_lengths(images, bases):
    big, cut = images["mug.jpg"], bases["bmp"][:-100]
    gathered, errors = screen([([big, cut], True), ([big, cut], False), ([bases["bmp"], big], False)])
    assert errors[0] == "image 1: truncated BMP: pixel data of 160x120 at 24 bits needs 57654 bytes, got 57554"
    assert errors[1].startswith("image 1: BMP of 57654 declared bytes ends in 100 zero bytes that may be padding")
    assert errors[2] is None  # complete images without lengths: each cut at its own end
    assert [len(image) for image in gathered.images[4:]] == [len(bases["bmp"]), len(big)]


def test_a_request_over_the_pixel_budget_is_refused_before_decoding(bases):
    webp = hp.webp_lossless(10_000, 10_000)  # 34 bytes; 100 M pixels each (the per-image limit)
    gathered, errors = screen([([webp] * 8, True), ([bases["jpeg"]], True)])
    assert errors[0] == "INPUT: request of 800000000 decoded pixels exceeds the limit of 256000000"
    assert gathered.slices[0] == slice(0, 0) and errors[1] is None  # nothing of it decoded; the other goes on
    small = PreprocessOptions(max_request_pixels=2 * 160 * 120)
    assert screen([([bases["jpeg"]] * 2, True)], small)[1] == [None]
    assert "exceeds the limit of 38400" in screen([([bases["jpeg"]] * 3, True)], small)[1][0]


def test_refused_images_leave_no_reference_cycles_holding_their_bytes(images, bases):
    # A kept exception with its traceback holds its frames' locals (the image bytes, decoded pixels)
    # in a cycle that only the garbage collector frees: a flood of bad images then piles up memory.
    cut_off = [data[: len(data) // 2] for data in bases.values()] + [bases["jpeg"][:-600] + b"\xff\xd9"]
    requests = [pack_images([images["mug.jpg"], *cut_off]), pack_images(cut_off)]
    gc.collect()
    gc.disable()
    try:
        gathered = gather_images(requests, lambda request: request, "INPUT", DEFAULTS)
        errors = request_errors(gathered, preprocess_batch(gathered.images, DEFAULTS)[1])
        assert all(errors)
        del gathered
        assert gc.collect() == 0
    finally:
        gc.enable()


def test_a_request_past_its_decode_time_is_not_decoded_further_and_other_requests_are():
    clock = DecodeBudget(PreprocessOptions(max_request_decode_ms=1), owners=[0, 0, 1])
    assert clock.spent(0) is None and clock.spent(2) is None  # each request's first image always starts
    clock.add(0, 0.002)  # image 0 took 2 ms of CPU
    assert "its request's images took over 1 ms" in str(clock.spent(1))
    assert clock.spent(2) is None  # request 1 has its own time
    unlimited = DecodeBudget(PreprocessOptions(max_request_decode_ms=0), owners=[0, 0])
    unlimited.add(0, 100.0)
    assert unlimited.spent(1) is None  # 0: no limit
