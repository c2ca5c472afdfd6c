"""Hostile image payloads, generated deterministically from one real image (for test_hostile.py).

Each builder returns ``Payload`` objects: the bytes, a category and whether the server must refuse
them (truncated, corrupt, over a limit, a refused format) or may answer (bit flips that keep the
structure, odd but valid EXIF). Pure functions of Pillow, zlib and numpy; the GPU tests can send
the same sets.
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass

import numpy as np
from PIL import Image

FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "BMP")


@dataclass(frozen=True)
class Payload:
    category: str
    data: bytes
    must_refuse: bool


def encode(image: Image.Image, fmt: str, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def base_images(photo: Image.Image) -> dict[str, bytes]:
    """Small valid images of every allowed format and their variants (progressive, animated ...)."""
    small = photo.convert("RGB").resize((160, 120), Image.Resampling.BILINEAR)
    turned = small.rotate(15)
    return {
        "jpeg": encode(small, "JPEG", quality=90),
        "jpeg_progressive": encode(small, "JPEG", quality=90, progressive=True),
        "jpeg_gray": encode(small.convert("L"), "JPEG"),
        "png": encode(small, "PNG"),
        "png_palette": encode(small.convert("P"), "PNG"),
        "apng": encode(small, "PNG", save_all=True, append_images=[turned]),
        "gif": encode(small, "GIF"),
        "gif_animated": encode(small, "GIF", save_all=True, append_images=[turned]),
        "webp": encode(small, "WEBP", quality=80),
        "webp_lossless": encode(small, "WEBP", lossless=True),
        "webp_animated": encode(small, "WEBP", save_all=True, append_images=[turned]),
        "bmp": encode(small, "BMP"),
        "bmp_palette": encode(small.convert("P"), "BMP"),
    }


def truncations(bases: dict[str, bytes], per_image: int, seed: int = 1) -> list[Payload]:
    """Each image cut at ``per_image`` points (first bytes, headers, middle, one byte short).

    A cut that removes only zero bytes (a RIFF pad byte) is skipped: zero-padded, it is the whole file.
    """
    rng = np.random.default_rng(seed)
    payloads = []
    for data in bases.values():
        fixed = [1, 2, 8, 16, 30, 60, 100, len(data) // 2, len(data) - 2, len(data) - 1]
        cuts = set(fixed + rng.integers(1, len(data), per_image).tolist())
        for cut in sorted(c for c in cuts if 0 < c < len(data))[:per_image]:
            if data[cut:].strip(b"\x00"):
                payloads.append(Payload("truncated", data[:cut], must_refuse=True))
    return payloads


def random_bytes(count: int, seed: int = 2) -> list[Payload]:
    """Random bytes; half start with an allowed format's signature so that its walker reads them."""
    rng = np.random.default_rng(seed)
    signatures = [b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF89a", b"BM", None]
    payloads = []
    for index in range(count):
        body = rng.integers(0, 256, int(rng.integers(1, 2048)), dtype=np.uint8).tobytes()
        signature = signatures[index % len(signatures)] if index % 2 else None
        if signature is None and index % 10 == 1:
            body = b"RIFF" + body[:4] + b"WEBP" + body[4:]
        payloads.append(Payload("random", (signature or b"") + body, must_refuse=True))
    return payloads


def bit_flips(bases: dict[str, bytes], count: int, seed: int = 3) -> list[Payload]:
    """1 to 8 random bits flipped anywhere: structure may survive, so answers are allowed."""
    rng = np.random.default_rng(seed)
    names = sorted(bases)
    payloads = []
    for index in range(count):
        flipped = bytearray(bases[names[index % len(names)]])
        for position in rng.integers(0, len(flipped), int(rng.integers(1, 9))):
            flipped[position] ^= 1 << int(rng.integers(0, 8))
        payloads.append(Payload("bit flip", bytes(flipped), must_refuse=False))
    return payloads


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_bomb(width: int, height: int) -> bytes:
    """A valid 8-bit gray PNG of ``width`` x ``height`` black pixels: ~1000:1 compressed zeros."""
    compressor = zlib.compressobj(9)
    row = b"\x00" * (width + 1)
    rows_per_piece = max(1, (1 << 22) // len(row))
    pieces = [compressor.compress(row * min(rows_per_piece, height - y)) for y in range(0, height, rows_per_piece)]
    idat = b"".join(pieces) + compressor.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return PNG_SIGNATURE + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def png_declaring(width: int, height: int, idat: bytes = zlib.compress(b"\x00" * 4)) -> bytes:
    """A well-formed PNG whose header declares ``width`` x ``height`` over almost no pixel data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return PNG_SIGNATURE + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


# A 34-byte lossless WebP of one colour: its pixels cost no bits, so any declared size is valid.
_WEBP_CONSTANT = bytes.fromhex("524946461a000000574542505650384c0e0000002f0fc00300071011fd0f4444ff03")


def webp_lossless(width: int, height: int) -> bytes:
    """A valid 34-byte lossless WebP of ``width`` x ``height`` black pixels (up to 16384 each)."""
    (bits,) = struct.unpack_from("<I", _WEBP_CONSTANT, 21)
    bits = (bits & ~0x0FFFFFFF) | (width - 1) | ((height - 1) << 14)
    return _WEBP_CONSTANT[:21] + struct.pack("<I", bits) + _WEBP_CONSTANT[25:]


def webp_canvas(canvas: tuple[int, int], inner: bytes) -> bytes:
    """An extended WebP (VP8X) whose canvas says ``canvas`` around the bitstream chunk of ``inner``."""
    vp8x = b"VP8X" + struct.pack("<I", 10) + b"\x00\x00\x00\x00"
    vp8x += (canvas[0] - 1).to_bytes(3, "little") + (canvas[1] - 1).to_bytes(3, "little")
    body = b"WEBP" + vp8x + inner[12:]
    return b"RIFF" + struct.pack("<I", len(body)) + body


def jpeg_with_size(jpeg: bytes, width: int, height: int) -> bytes:
    """``jpeg`` with its frame header patched to declare ``width`` x ``height``."""
    position = next(i for i in range(2, len(jpeg) - 1) if jpeg[i] == 0xFF and jpeg[i + 1] in (0xC0, 0xC2))
    return jpeg[: position + 5] + struct.pack(">HH", height, width) + jpeg[position + 9 :]


def gif_with_frame(width: int, height: int) -> bytes:
    """A GIF whose screen is 1x1 and whose one frame declares ``width`` x ``height``."""
    screen = b"GIF89a" + struct.pack("<HHBBB", 1, 1, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff"
    frame = b"\x2c" + struct.pack("<HHHHB", 0, 0, width, height, 0) + b"\x02\x02\x44\x01\x00"
    return screen + frame + b"\x3b"


def bmp_with_size(width: int, height: int) -> bytes:
    """A BMP header declaring ``width`` x ``height`` at 24 bits with only 64 bytes of pixels."""
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 2835, 2835, 0, 0)
    pixels = b"\x80" * 64
    return b"BM" + struct.pack("<IHHI", 14 + 40 + 64, 0, 0, 54) + info + pixels


def ico_embedding(png: bytes, declared: int = 16) -> bytes:
    """An ICO whose directory says ``declared`` x ``declared`` but embeds ``png``."""
    entry = struct.pack("<BBBBHHII", declared, declared, 0, 0, 1, 32, len(png), 22)
    return struct.pack("<HHH", 0, 1, 1) + entry + png


def lying_headers(bases: dict[str, bytes]) -> list[Payload]:
    """Headers whose sizes do not match their data (within the pixel limits): refused as truncated
    or undecodable, never answered from invented pixels."""
    payloads = [Payload("lying header", png_declaring(w, h), True) for w, h in [(5000, 5000), (64, 64), (1, 9000)]]
    payloads += [Payload("lying header", bmp_with_size(w, h), True) for w, h in [(4000, 3000), (-5, 5), (0, 3)]]
    payloads += [Payload("lying header", png_declaring(w, h), True) for w, h in [(0, 10), (10, 0)]]
    payloads.append(Payload("lying header", webp_canvas((16, 16), webp_lossless(5000, 5000)), True))
    payloads.append(Payload("lying header", webp_canvas((5000, 5000), bases["webp"]), False))
    for name in ("jpeg", "jpeg_progressive"):
        payloads.append(Payload("lying header", jpeg_with_size(bases[name], 4000, 3000), True))  # too little data
        payloads.append(Payload("lying header", jpeg_with_size(bases[name], 8, 8), False))  # more than enough
    return payloads


def bombs(bases: dict[str, bytes]) -> list[tuple[str, list[bytes], str]]:
    """Requests over a limit: (what, the request's images, a regex the error must match)."""
    over = r"exceeds the limit"
    png_big = png_bomb(12_000, 12_000)  # 144 M pixels in ~140 kB
    return [
        ("8 x 34-byte lossless WebP 10000x10000", [webp_lossless(10_000, 10_000)] * 8, over),
        ("lossless WebP 16384x16384", [webp_lossless(16_384, 16_384)], over),
        ("PNG 12000x12000 of compressed zeros", [png_big], over),
        ("4 x PNG 9000x9000 of compressed zeros", [png_bomb(9_000, 9_000)] * 4, over),
        ("ICO saying 16x16 around a 12000x12000 PNG", [ico_embedding(png_big)], "ICO is refused on purpose"),
        ("APNG frame 20000x20000 in a 160x120 PNG", [_apng_with_frame(bases["png"], 20_000, 20_000)], over),
        ("GIF 1x1 screen, 60000x60000 frame", [gif_with_frame(60_000, 60_000)], over),
        ("WebP canvas 16383x16383", [webp_canvas((16_383, 16_383), bases["webp"])], over),
        ("WebP canvas 16x16 around 16384x16384", [webp_canvas((16, 16), webp_lossless(16_384, 16_384))], over),
        ("JPEG frame 65000x65000", [jpeg_with_size(bases["jpeg"], 65_000, 65_000)], r"exceeds|truncated JPEG"),
        ("BMP 30000x30000 header, 64 bytes", [bmp_with_size(30_000, 30_000)], r"truncated BMP|exceeds"),
        ("TIFF", [encode(Image.new("RGB", (64, 64)), "TIFF")], "TIFF is refused on purpose"),
        ("PSD-like", [b"8BPS\x00\x01" + b"\x00" * 64], "PSD is refused on purpose"),
    ]


def _apng_with_frame(png: bytes, width: int, height: int) -> bytes:
    """``png`` with an APNG frame-control chunk declaring ``width`` x ``height`` after its IHDR."""
    actl = png_chunk(b"acTL", struct.pack(">II", 1, 0))
    fctl = png_chunk(b"fcTL", struct.pack(">IIIIIHHBB", 0, width, height, 0, 0, 1, 1, 0, 0))
    ihdr_end = 8 + 25
    return png[:ihdr_end] + actl + fctl + png[ihdr_end:]


def exif_orientation(kind: int, count: int, value: bytes) -> bytes:
    """A big-endian EXIF block with one orientation entry of TIFF type ``kind`` (value inline)."""
    entry = struct.pack(">HHHI", 1, 0x0112, kind, count) + value.ljust(4, b"\x00")[:4]
    return b"Exif\x00\x00MM\x00*" + struct.pack(">I", 8) + entry + struct.pack(">I", 0)


def odd_exif(photo: Image.Image) -> list[tuple[str, bytes]]:
    """JPEGs whose EXIF orientation is unusable (text, out of range, another type, broken IFD):
    every one must be answered as upright."""
    small = photo.convert("RGB").resize((160, 120), Image.Resampling.BILINEAR)
    blocks = {
        'text "6"': exif_orientation(2, 2, b"6\x00"),
        'text "abc"': exif_orientation(2, 4, b"abc\x00"),
        "0": exif_orientation(3, 1, b"\x00\x00"),
        "9": exif_orientation(3, 1, b"\x00\x09"),
        "65535": exif_orientation(3, 1, b"\xff\xff"),
        "rational": exif_orientation(5, 1, struct.pack(">I", 0xFFFF)),
        "IFD offset past the end": b"Exif\x00\x00MM\x00*" + struct.pack(">I", 0x7FFFFFF0),
        "entry count 65535": b"Exif\x00\x00MM\x00*" + struct.pack(">IH", 8, 0xFFFF),
        "not TIFF": b"Exif\x00\x00garbage!",
    }
    return [(name, encode(small, "JPEG", quality=90, exif=block)) for name, block in blocks.items()]


# --- issue 28: images that once cost far more than their bytes, or were answered from invented pixels ---


def webp_nested(inner_webp: bytes, depth: int = 3_000, width: int = 16_385) -> bytes:
    """``inner_webp``'s chunks wrapped in ``depth`` ANMF frames, each inside the last (the deepest declaring
    ``width`` x 16): deeper than Python's recursion limit."""
    inner = inner_webp[12:]
    for _ in range(depth):
        size = b"\0" * 6 + (width - 1).to_bytes(3, "little") + (15).to_bytes(3, "little")
        body = size + b"\0" * 3 + b"\0" + inner  # x, y, width-1, height-1, duration, flags
        inner = b"ANMF" + struct.pack("<I", len(body)) + body + b"\0" * (len(body) & 1)
    return b"RIFF" + struct.pack("<I", 4 + len(inner)) + b"WEBP" + inner


def rle_bmp(width: int = 10_000, height: int = 10_000) -> bytes:
    """A run-length (RLE8) BMP of a few dozen bytes declaring ``width`` x ``height``: one pixel, then end of line."""
    header = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 8, 1, 50, 0, 0, 0, 0)
    return b"BM" + struct.pack("<IHHI", 14 + 40 + 50, 0, 0, 54) + header + b"\x01\x00\x00\x00" * 12 + b"\x00\x01"


def arithmetic_jpeg(jpeg: bytes) -> bytes:
    """``jpeg`` (baseline) with its frame header marked arithmetic-coded (SOF9)."""
    sof = jpeg.index(b"\xff\xc0")
    return jpeg[: sof + 1] + b"\xc9" + jpeg[sof + 2 :]


def jpeg_of_comments(jpeg: bytes, count: int = 200_000) -> bytes:
    """``jpeg`` with ``count`` empty comment segments after its SOI."""
    return jpeg[:2] + b"\xff\xfe\x00\x02" * count + jpeg[2:]


def jpeg_cut_and_closed(jpeg: bytes, kept: float) -> bytes:
    """``jpeg`` with only ``kept`` of its scan data, then EOI: a decoder would fill the rest."""
    scan = jpeg.index(b"\xff\xda")
    return jpeg[: scan + int((len(jpeg) - scan) * kept)] + b"\xff\xd9"


def jpeg_without_its_first_scan(jpeg: bytes) -> bytes:
    """``jpeg`` (progressive) without its first scan, the one that gives every component its DC values."""
    first = jpeg.index(b"\xff\xda")
    return jpeg[:first] + jpeg[jpeg.index(b"\xff\xda", first + 2) :]


def png_short_rows(width: int = 200, height: int = 100) -> bytes:
    """A well-formed RGB PNG whose complete zlib stream holds only its first tenth of rows (noise)."""
    noise = np.random.default_rng(0).integers(0, 256, (height // 10, 3 * width), np.uint8)
    return png_declaring(width, height, idat=zlib.compress(b"".join(b"\x00" + row.tobytes() for row in noise)))


def issue_28_refused(bases: dict[str, bytes]) -> list[Payload]:
    """Issue 28's hostile images, each refused (by the checks before decoding, or by the decoder)."""
    return [
        Payload("WebP frames nested 3,000 deep", webp_nested(bases["webp"]), True),
        Payload("run-length BMP", rle_bmp(), True),
        Payload("arithmetic-coded JPEG", arithmetic_jpeg(bases["jpeg"]), True),
        Payload("JPEG of 200,000 empty comments", jpeg_of_comments(bases["jpeg"]), True),
        Payload("PNG stream of a tenth of its rows", png_short_rows(), True),
        Payload("JPEG scan cut to 2% and closed", jpeg_cut_and_closed(bases["jpeg"], 0.02), True),
        Payload("JPEG scan cut to 60% and closed", jpeg_cut_and_closed(bases["jpeg"], 0.6), True),
        Payload("progressive JPEG cut to 90% and closed", jpeg_cut_and_closed(bases["jpeg_progressive"], 0.9), True),
        Payload("progressive JPEG without its DC scan", jpeg_without_its_first_scan(bases["jpeg_progressive"]), True),
    ]
