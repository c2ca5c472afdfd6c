"""Untrusted image bytes checked before any pixel is decoded: format, completeness, declared sizes.

Pure functions over bytes (no Pillow, no numpy), shared by the CPU and GPU decoders so that both
refuse the same inputs with the same words. For each allowed format the bytes are walked by the
format's own structure:

- JPEG: SOI, well-formed marker segments, entropy-coded data up to EOI (every frame header counted);
- PNG: every chunk complete with a matching CRC, up to IEND (IHDR and every APNG frame counted);
- GIF: every block complete, up to the trailer (the screen and every frame counted);
- WebP: the RIFF size, every chunk inside it (the canvas, every frame and bitstream header counted);
- BMP: the pixel data its header declares (no end marker: see ``may_be_padded``).

Anything after the end (an encoder's trailer, zero padding of a multi-image row) is ignored; a file
that stops before its end is refused, so a cut-off upload is never classified. The header sizes of
every frame and embedded bitstream count against the pixel limit, so a container whose outer header
is small cannot smuggle a large image. Other formats (TIFF, ICO, PSD, EPS ...) are refused: their
headers do not bound what decoding costs (ICO embeds PNGs of any size; TIFF's strips, tiles and
pages lie anywhere in the file), and JPEG/PNG/WebP/GIF/BMP are what web uploads and ImageNet use.
For the same reason arithmetic-coded JPEGs and run-length BMPs are refused by name.

Each image's data must also hold what its header declares, so that no decoder invents pixels: a
JPEG scan at least its blocks' least cost under its own Huffman tables (``_check_scan_data``), a
PNG's stream every row (``check_rows_filled``, one inflate, after the pixel limits). The walks are
loops, not recursion, and stop early on files of countless tiny chunks (``_max_steps``).
"""

from __future__ import annotations

import functools
import re
import struct
import zlib
from dataclasses import dataclass

from resnet_serve.errors import ResnetServeError

ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP")  # Pillow's names for the plugins we let open images
# Formats known and refused by name (not as unrecognised): e.g. an ICO directory saying 16x16 can wrap a
# 13000x13000 PNG, and a TIFF's strips and compressions are not bounded by what its header declares.
REFUSED_FORMATS = {"TIFF": b"II*\x00", "TIFF (big-endian)": b"MM\x00*", "ICO": b"\x00\x00\x01\x00", "PSD": b"8BPS"}


class ImageError(ResnetServeError, ValueError):
    """An input image that cannot be preprocessed; the message says why."""


def as_image_error(exc: Exception) -> ImageError:
    """``exc``, raised while checking or decoding one image, as that image's own error, without its
    traceback or the decoder's exception it replaced (their frames would keep the image's bytes alive).
    Anything that is not an ImageError (a RecursionError, a MemoryError, a decoder's bug) gets a short
    message naming only its type, so that it fails its own request alone and no server path reaches the
    client (issue 28)."""
    if isinstance(exc, ImageError):
        exc.__context__ = None
        return exc.with_traceback(None)
    return ImageError(f"could not be decoded ({type(exc).__name__})")


@dataclass(frozen=True)
class ImageInfo:
    """What the bytes declare, read from headers only."""

    format: str  # one of ALLOWED_FORMATS
    end: int  # bytes the image occupies; what follows is not part of it
    frames: tuple[tuple[int, int], ...]  # (width, height) of every frame, canvas and embedded bitstream
    plain: bool = False  # a JPEG with nothing in its header but the picture (see _plain_jpeg)
    # A JPEG of several scans (progressive, or components in separate scans): libjpeg keeps every
    # coefficient of the whole image, at full size, whatever scale it is asked to decode to.
    buffered: bool = False

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the first frame header: the image decoded."""
        return self.frames[0]

    @property
    def largest_pixels(self) -> int:
        return max(width * height for width, height in self.frames)


def sniff_format(data: bytes) -> str | None:
    """The allowed format whose signature ``data`` starts with, else None."""
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "GIF"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if data.startswith(b"BM"):
        return "BMP"
    return None


def inspect_image(data: bytes, may_be_padded: bool = False) -> ImageInfo:
    """Walk ``data``'s structure; refuse an unknown format, a truncated or malformed file.

    ``may_be_padded``: the bytes are a row of a multi-image request sent without its length, so
    trailing zeros may be padding. Formats that end with a marker (JPEG, PNG, GIF) are unaffected;
    for BMP and WebP, whose end is only a declared size, an image whose declared bytes reach into
    the trailing zeros is refused (those zeros may be padding that stands in for a cut-off end).
    """
    fmt = sniff_format(data)
    if fmt is None:
        refused = next((name for name, magic in REFUSED_FORMATS.items() if data.startswith(magic)), None)
        if refused:
            raise ImageError(
                f"{refused} is refused on purpose: its header does not bound what decoding it costs "
                f"(allowed: {', '.join(ALLOWED_FORMATS)})"
            )
        raise ImageError(f"not a recognised image format (allowed: {', '.join(ALLOWED_FORMATS)})")
    try:
        info = _WALKERS[fmt](data)
    except struct.error:  # a field read past the end that no explicit check caught
        raise ImageError(f"truncated {fmt}: a header runs past the end ({len(data)} bytes)") from None
    if not info.frames or min(min(frame) for frame in info.frames) < 1:
        raise ImageError(f"invalid {fmt} image size {_sizes(info.frames)}")
    if may_be_padded and fmt in ("BMP", "WEBP"):
        _refuse_padding_inside(data, info)
    return info


def check_pixels(info: ImageInfo, max_pixels: int) -> None:
    """Refuse an image any of whose frames or embedded images declares more than ``max_pixels``."""
    for width, height in info.frames:
        if width * height > max_pixels:
            raise ImageError(f"{width}x{height} pixels exceeds the limit of {max_pixels}")


def decoded_pixels(info: ImageInfo, resize: int, jpeg_draft: bool) -> int:
    """Pixels the decoder allocates for this image: the largest frame, or for a JPEG decoded in
    draft mode the size libjpeg scales it to (preprocess asks for twice ``resize``; Pillow picks
    1/8, 1/4, 1/2 or 1 as its JpegImageFile.draft does). A JPEG of several scans counts at full size:
    libjpeg holds all its coefficients (a 10000x10000 progressive JPEG of 113 bytes took 800 MB)."""
    width, height = info.size
    scale = 2 * resize / min(width, height)
    if not (jpeg_draft and info.format == "JPEG") or info.buffered or scale >= 1.0:
        return info.largest_pixels
    wanted = min(width // max(1, round(width * scale)), height // max(1, round(height * scale)))
    factor = next(f for f in (8, 4, 2, 1) if wanted >= f)
    return _ceil(width, factor) * _ceil(height, factor)


def _sizes(frames) -> str:
    return ", ".join(f"{width}x{height}" for width, height in frames) or "none"


def _need(data: bytes, end: int, fmt: str, what: str, *what_args: object) -> None:
    """Refuse ``data`` as truncated when shorter than ``end``; ``what`` (a ``str.format`` template
    of ``what_args``) is formatted only then: the walks call this for every segment and chunk."""
    if end > len(data):
        raise ImageError(f"truncated {fmt}: {what.format(*what_args)} needs {end} bytes, got {len(data)}")


def _max_steps(data: bytes) -> int:
    """Chunks, segments or blocks a walk visits before it refuses the file. Real files have few per
    KiB (PNG's IDAT chunks are 8-64 KiB, GIF's sub-blocks 255 bytes); a file of empty chunks or
    1-byte blocks would make the Python walk cost ~100x a real file's per MB, so it stops early."""
    return 4096 + len(data) // 128


def _refuse_overlong_walk(fmt: str, steps: int, data: bytes) -> None:
    if steps > _max_steps(data):
        raise ImageError(
            f"corrupt {fmt}: more than {_max_steps(data)} chunks or blocks in {len(data)} bytes (real files have fewer)"
        )


def _refuse_padding_inside(data: bytes, info: ImageInfo) -> None:
    """Refuse when the declared end lies past the last non-zero byte (allowing WebP's one pad byte)."""
    last = len(data[: info.end].rstrip(b"\x00"))
    slack = 1 if info.format == "WEBP" else 0
    if info.end - last > slack:
        raise ImageError(
            f"{info.format} of {info.end} declared bytes ends in {info.end - last} zero bytes that may be padding; "
            "send INPUT_LENGTHS with multi-image requests"
        )


# --- JPEG ---------------------------------------------------------------------------------------

# Frame headers (SOF0-3, 5-7, 9-11, 13-15): they carry the image size.
_JPEG_SOF = frozenset((0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF))
_JPEG_STANDALONE = frozenset((0x01, *range(0xD0, 0xD8)))  # TEM, RST0-7: no length field
# In entropy-coded data 0xFF is followed by 0x00 (a stuffed byte), RST0-7 or 0xFF (fill); anything
# else is the next marker.
_JPEG_NEXT_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")


# Arithmetic-coded frames (SOF9-11, 13-15) can spend under one bit per block, so their bytes do not
# bound what they cost: 163 of 113 bytes each, declaring 10000x10000, took 20 s to decode, and 60
# progressive ones 32 s and 1.7 GB (issue 28). No common encoder writes them; browsers do not show them.
_JPEG_ARITHMETIC = frozenset((0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF))
_JPEG_PROGRESSIVE = frozenset((0xC2, 0xC6))  # Huffman-coded (the arithmetic ones are refused)
_JPEG_LOSSLESS = frozenset((0xC3, 0xC7))  # samples, not 8x8 blocks: held to one bit per 64 samples
_JPEG_MAX_SEGMENTS = 4096  # marker segments outside the scans' data; real files have tens
_JPEG_FILL = re.compile(rb"\xff*")


def _ceil(numerator: int, denominator: int) -> int:
    return -(-numerator // denominator)


def _huffman_costs(body: bytes) -> tuple[tuple[int, tuple[int, int]], ...]:
    """Per table of a (checked) DHT segment: its class and id (class << 4 | id), and the length of its
    shortest code and of its end-of-block code (0 where it has none)."""
    costs, pos = [], 0
    while pos < len(body):
        kind, counts = body[pos], body[pos + 1 : pos + 17]
        values = body[pos + 17 : pos + 17 + sum(counts)]
        lengths = [length for length, count in enumerate(counts, 1) for _ in range(count)]
        end_of_block = lengths[values.index(0)] if 0 in values else 0
        costs.append((kind, (lengths[0] if lengths else 16, end_of_block)))
        pos += 17 + len(values)
    return tuple(costs)


_remembered_huffman_costs = functools.lru_cache(maxsize=64)(_huffman_costs)


def _block_min_bits(selectors: int, spectral: tuple[int, int], refining: bool, tables: dict) -> int:
    """Fewest bits one block of a component costs in a scan, under the Huffman tables it selects."""
    first, last = spectral
    if first > 0:
        return 0  # AC bands of a progressive JPEG: one end-of-band run may cover many blocks
    if refining:
        return 1  # a DC refinement scan: one bit per block
    dc_shortest, _ = tables.get(selectors >> 4, (1, 0))
    if last == 0:
        return dc_shortest
    ac_shortest, end_of_block = tables.get(0x10 | selectors & 0x0F, (1, 0))
    # A block ends with its end-of-block code or fills 63 coefficients, at most 16 per code.
    return dc_shortest + (min(end_of_block, 4 * ac_shortest) if end_of_block else 4 * ac_shortest)


def _scan_cost(data: bytes, sof: int, scan: bytes, tables: dict, lossless: bool) -> tuple[int, int]:
    """(blocks, fewest bits) of the scan whose header body is ``scan``, in the frame at ``sof``
    (its length field): a component alone in a scan has its own blocks; interleaved ones, whole MCUs."""
    height, width, count = struct.unpack_from(">HHB", data, sof + 3)
    sampling = {data[sof + 8 + 3 * i]: (data[sof + 9 + 3 * i] >> 4, data[sof + 9 + 3 * i] & 0x0F) for i in range(count)}
    h_max, v_max = max(h for h, _ in sampling.values()), max(v for _, v in sampling.values())
    components = scan[0]
    spectral, refining = (scan[1 + 2 * components], scan[2 + 2 * components]), scan[3 + 2 * components] >> 4 > 0
    blocks = bits = 0
    for index in range(components):
        h, v = sampling[scan[1 + 2 * index]]
        if components == 1:
            count = _ceil(_ceil(width * h, h_max), 8) * _ceil(_ceil(height * v, v_max), 8)
        else:
            count = _ceil(width, 8 * h_max) * _ceil(height, 8 * v_max) * h * v
        blocks += count
        bits += count if lossless else count * _block_min_bits(scan[2 + 2 * index], spectral, refining, tables)
    return blocks, bits


def _check_scan_data(data: bytes, sof: int, scan: bytes, tables: dict, lossless: bool, scan_bytes: int) -> None:
    """A scan's entropy-coded data must hold the fewest bits its blocks cost under its own Huffman
    tables (a DC code and an end-of-block code each, for a baseline scan): a scan cut short and
    closed with EOI would otherwise decode with the missing blocks invented (libjpeg fills them)."""
    blocks, bits = _scan_cost(data, sof, scan, tables, lossless)
    if scan_bytes * 8 < bits:
        raise ImageError(
            f"truncated JPEG: {scan_bytes} bytes of scan data cannot hold the {blocks} blocks its size declares "
            f"(its Huffman tables need at least {_ceil(bits, 8)})"
        )


# The checks libjpeg makes when it reads these segments (jdmarker.c: "Bogus marker length", "Bogus
# Huffman table definition", "Bogus sampling factors" ...), made here so that the GPU decoder, which is
# more lenient, never sees a file the CPU decoder refuses. Each returns what is wrong, or None.
def _check_frame(body: bytes, data: bytes, sof: int) -> str | None:
    count = body[5]
    if not 1 <= count <= 4:
        return f"{count} components"
    if len(body) != 6 + 3 * count:
        return f"bogus marker length {len(body) + 2} for {count} components"
    for index in range(count):
        sampling, table = body[7 + 3 * index], body[8 + 3 * index]
        if not (1 <= sampling >> 4 <= 4 and 1 <= sampling & 0x0F <= 4):
            return f"bogus sampling factors {sampling >> 4}x{sampling & 0x0F}"
        if table > 3:
            return f"quantization table {table}"
    return None


def _check_huffman(body: bytes, data: bytes, sof: int) -> str | None:
    pos = 0
    while pos < len(body):
        if len(body) - pos < 17:
            return "bogus marker length"
        kind, counts = body[pos], body[pos + 1 : pos + 17]
        symbols = sum(counts)
        values = body[pos + 17 : pos + 17 + symbols]
        dc_overflow = kind >> 4 == 0 and any(value > 15 for value in values)
        if kind >> 4 > 1 or kind & 0x0F > 3 or symbols > 256 or dc_overflow or not _fits_code_space(counts):
            return "bogus Huffman table definition"
        pos += 17 + symbols
    return None if pos == len(body) else "bogus marker length"


def _fits_code_space(counts: bytes) -> bool:
    """The code lengths make a prefix code that leaves the all-ones code free (libjpeg's check)."""
    code = 0
    for length, count in enumerate(counts, 1):
        code += count
        if code >= 1 << length and any(counts[length - 1 :]):
            return False
        code <<= 1
    return True


def _check_quantization(body: bytes, data: bytes, sof: int) -> str | None:
    pos = 0
    while pos < len(body):
        precision, table = body[pos] >> 4, body[pos] & 0x0F
        if precision > 1 or table > 3:
            return f"bogus quantization table {precision}/{table}"
        pos += 1 + 64 * (precision + 1)
    return None if pos == len(body) else "bogus marker length"


def _check_scan(body: bytes, data: bytes, sof: int) -> str | None:
    count = body[0] if body else 0
    if not 1 <= count <= 4 or len(body) != 4 + 2 * count:
        return f"bogus marker length {len(body) + 2} for {count} scan components"
    components = {data[sof + 8 + 3 * index] for index in range(data[sof + 7])} if sof else set()
    for index in range(count):
        component, tables = body[1 + 2 * index], body[2 + 2 * index]
        if component not in components:
            return f"component {component} is not in the frame header"
        if tables >> 4 > 3 or tables & 0x0F > 3:
            return "bogus Huffman table number"
    return None


def _check_restart_interval(body: bytes, data: bytes, sof: int) -> str | None:
    return None if len(body) == 2 else "bogus marker length"


_JPEG_TABLE_CHECKS = {
    **dict.fromkeys(_JPEG_SOF, _check_frame),
    0xC4: _check_huffman,
    0xDB: _check_quantization,
    0xDA: _check_scan,
    0xDD: _check_restart_interval,
}


_REMEMBERED_TABLE_BYTES = 2048  # a segment of libjpeg's 4 Huffman tables is 420 bytes; 2 quantization tables 134


@functools.lru_cache(maxsize=64)
def _remembered_table_problem(marker: int, body: bytes) -> str | None:
    return _JPEG_TABLE_CHECKS[marker](body, b"", 0)


def _table_problem(marker: int, body: bytes) -> str | None:
    """The Huffman or quantization table check of ``body`` (which alone decides it), remembered for
    small segments: encoders reuse a few tables (libjpeg's standard ones at each quality), and the
    walk of a 500x375 JPEG measured ~12% faster with them remembered. At most 64 x 2 KiB held."""
    if len(body) > _REMEMBERED_TABLE_BYTES:
        return _JPEG_TABLE_CHECKS[marker](body, b"", 0)
    return _remembered_table_problem(marker, body)


# Segments a decoder reads as tables or not at all, and Pillow's header parse stores without reading:
# tables, restart interval, comments, APP0 (JFIF: checked whole) and APP3-12, APP15. EXIF and XMP
# (APP1), ICC and MPF (APP2), Photoshop (APP13), Adobe (APP14: its colour transform) and the rarer
# markers are not plain.
_PLAIN_SEGMENTS = frozenset((0xC4, 0xDB, 0xDD, 0xFE, 0xE0, *range(0xE3, 0xED), 0xEF))
_PLAIN_FRAMES = frozenset((0xC0, 0xC1, 0xC2))  # Huffman-coded baseline, extended, progressive
_JFIF_BYTES = 14  # identifier, version, units, densities, thumbnail size


def _plain_jpeg(data: bytes, header: list[tuple[int, int, int]]) -> bool:
    """Whether the segments before the first scan (marker, body start, body end) describe only the
    picture: the file's one frame, 8-bit, Huffman-coded, 1 or 3 components in grey or YCbCr (as
    libjpeg decides: JFIF, or no Adobe segment and component ids other than R, G, B), and plain
    segments. So no EXIF orientation, colour profile or colour transform, and nothing Pillow's
    header parse refuses (other bit depths and component counts, a short JFIF segment, markers it
    does not know): Pillow would open it upright, as L or RGB, at the frame's size. The caller
    checks that the whole file has one frame."""
    frames = [(marker, start) for marker, start, _ in header if marker in _JPEG_SOF]
    if len(frames) != 1 or frames[0][0] not in _PLAIN_FRAMES:
        return False
    jfif = False
    for marker, start, end in header:
        if marker not in _PLAIN_SEGMENTS and marker not in _PLAIN_FRAMES:
            return False
        if marker == 0xE0 and data.startswith(b"JFIF", start):  # Pillow reads it; libjpeg wants JFIF\0
            if end - start < _JFIF_BYTES:
                return False
            jfif = jfif or data[start + 4] == 0
    start = frames[0][1]
    precision, count = data[start], data[start + 5]
    ids = bytes(data[start + 6 + 3 * index] for index in range(count))
    return precision == 8 and (count == 1 or (count == 3 and (jfif or ids != b"RGB")))  # libjpeg: RGB ids mean RGB


def _walk_jpeg(data: bytes) -> ImageInfo:
    frames: list[tuple[int, int]] = []
    header: list[tuple[int, int, int]] = []  # segments before the first scan: marker, body start, body end
    tables: dict[int, tuple[int, int]] = {}  # Huffman tables defined so far: (shortest, end-of-block) code lengths
    sof = sof_marker = scans = segments = 0
    unscanned: set[int] = set()  # the frame's components no scan has given values yet (a first DC scan, if progressive)
    pos, size = 2, len(data)
    while True:
        if pos >= size:
            raise ImageError(f"truncated JPEG: no end-of-image marker (EOI) in {size} bytes")
        if data[pos] != 0xFF:
            raise ImageError(f"corrupt JPEG: expected a marker at byte {pos}, got 0x{data[pos]:02x}")
        pos = _JPEG_FILL.match(data, pos).end()  # fill bytes may precede a marker
        if pos >= size:
            continue
        marker = data[pos]
        pos += 1
        segments += 1
        if segments > _JPEG_MAX_SEGMENTS:
            raise ImageError(f"corrupt JPEG: more than {_JPEG_MAX_SEGMENTS} marker segments (real files have tens)")
        if marker == 0xD9:
            if not scans:
                raise ImageError("corrupt JPEG: no scan before the end-of-image marker")
            if unscanned:  # libjpeg would leave them at zero and say nothing: a grey or green picture
                raise ImageError(f"truncated JPEG: no scan holds component(s) {sorted(unscanned)} of its frame")
            plain = len(frames) == 1 and _plain_jpeg(data, header)
            return ImageInfo("JPEG", pos, tuple(frames), plain=plain, buffered=scans > 1)
        if marker in _JPEG_STANDALONE:
            if not scans:
                header.append((marker, pos, pos))
            continue
        if marker in (0x00, 0xD8):
            raise ImageError(f"corrupt JPEG: unexpected marker 0xff{marker:02x} at byte {pos - 2}")
        _need(data, pos + 2, "JPEG", "segment 0xff{:02x} at byte {}", marker, pos - 2)
        (length,) = struct.unpack_from(">H", data, pos)
        if length < 2:
            raise ImageError(f"corrupt JPEG: segment 0xff{marker:02x} at byte {pos - 2} has length {length}")
        _need(data, pos + length, "JPEG", "segment 0xff{:02x} at byte {}", marker, pos - 2)
        if marker in _JPEG_ARITHMETIC:
            raise ImageError(
                "arithmetic-coded JPEG is refused on purpose: its bytes do not bound what decoding it costs"
            )
        if marker in _JPEG_SOF:
            if length < 8:
                raise ImageError(f"corrupt JPEG: frame header at byte {pos - 2} has length {length}")
            height, width, count = struct.unpack_from(">HHB", data, pos + 3)
            if length < 8 + 3 * count:
                raise ImageError(f"corrupt JPEG: frame header at byte {pos - 2} too short for {count} components")
            if not frames:
                sof, sof_marker = pos, marker
                unscanned = {data[pos + 8 + 3 * index] for index in range(count)}
            frames.append((width, height))
        if marker in (0xC4, 0xDB):  # they depend on the body alone
            problem = _table_problem(marker, bytes(data[pos + 2 : pos + length]))  # bytes: hashable
        elif marker in _JPEG_TABLE_CHECKS:
            problem = _JPEG_TABLE_CHECKS[marker](data[pos + 2 : pos + length], data, sof)
        else:  # APPn, comments: their content is not the decoder's business
            problem = None
        if problem:
            raise ImageError(f"corrupt JPEG: {problem} in segment 0xff{marker:02x} at byte {pos - 2}")
        body = data[pos + 2 : pos + length]
        if marker == 0xC4:
            costs = _huffman_costs if len(body) > _REMEMBERED_TABLE_BYTES else _remembered_huffman_costs
            tables.update(costs(bytes(body)))
        if marker != 0xDA and not scans:
            header.append((marker, pos + 2, pos + length))
        pos += length
        if marker == 0xDA:  # start of scan: entropy-coded data runs to the next marker
            if not frames:
                raise ImageError(f"corrupt JPEG: scan at byte {pos - length - 2} before any frame header")
            found = _JPEG_NEXT_MARKER.search(data, pos)
            if found is None:
                raise ImageError(f"truncated JPEG: no end-of-image marker (EOI) in {size} bytes")
            _check_scan_data(data, sof, body, tables, sof_marker in _JPEG_LOSSLESS, found.start() - pos)
            first_dc = body[1 + 2 * body[0]] == 0 and body[3 + 2 * body[0]] >> 4 == 0  # spectral start 0, Ah 0
            if first_dc or sof_marker not in _JPEG_PROGRESSIVE:
                unscanned.difference_update(body[1 : 1 + 2 * body[0] : 2])
            scans += 1
            pos = found.start()


# --- PNG ----------------------------------------------------------------------------------------


_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # by colour type
DEFLATE_MAX_RATIO = 1032  # deflate's best case: 258 bytes per (at least) 2 bits


def _check_png_data_size(data: bytes, idat_bytes: int) -> None:
    """Image data too short to inflate to the declared rows even at deflate's best ratio: the
    decoder would invent the rest (Pillow fills missing rows when the stream ends early)."""
    width, height, depth, colour = struct.unpack_from(">IIBB", data, 16)
    raw = height * (1 + _ceil(width * _PNG_CHANNELS.get(colour, 1) * depth, 8))
    if idat_bytes * DEFLATE_MAX_RATIO < raw:
        raise ImageError(
            f"truncated PNG: {idat_bytes} bytes of image data cannot inflate to the {raw} bytes its size declares"
        )


_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


def _png_raw_bytes(data: bytes) -> int:
    """Bytes the image data inflates to: each row's filter byte and samples (per Adam7 pass if interlaced)."""
    width, height, depth, colour, _, _, interlace = struct.unpack_from(">IIBBBBB", data, 16)
    bits = _PNG_CHANNELS.get(colour, 1) * depth
    passes = _ADAM7 if interlace else ((0, 0, 1, 1),)
    sizes = [(_ceil(width - x, dx), _ceil(height - y, dy)) for x, y, dx, dy in passes]
    return sum(rows * (1 + _ceil(columns * bits, 8)) for columns, rows in sizes if columns > 0 and rows > 0)


def _png_chunks(data: bytes, end: int):
    """(type, body) of each chunk of a walked PNG."""
    pos = 8
    while pos < end:
        length, kind = struct.unpack_from(">I4s", data, pos)
        yield kind, memoryview(data)[pos + 8 : pos + 8 + length]
        pos += 12 + length


_INFLATE_PIECE = 1 << 20  # inflated bytes held at once while counting


def check_rows_filled(data: bytes, info: ImageInfo) -> None:
    """Refuse a PNG whose image data, inflated, does not fill every row its header declares: Pillow
    fills the missing rows (a complete zlib stream holding 10% of the rows was classified, issue 28).
    One inflate, counted and dropped as it goes, up to the declared size: call it after the pixel
    limits. Other formats are complete once walked (``inspect_image``)."""
    if info.format != "PNG":
        return
    needed, produced = _png_raw_bytes(data), 0
    inflater = zlib.decompressobj()
    try:
        for kind, body in _png_chunks(data, info.end):
            if kind != b"IDAT":
                continue
            pending = bytes(body)
            while pending and produced < needed:
                produced += len(inflater.decompress(pending, _INFLATE_PIECE))
                pending = inflater.unconsumed_tail
            if produced >= needed:
                return
    except zlib.error as exc:
        raise ImageError(f"corrupt PNG: image data does not inflate ({exc})") from None
    raise ImageError(f"truncated PNG: image data inflates to {produced} bytes, its size declares {needed}")


def _walk_png(data: bytes) -> ImageInfo:
    frames: list[tuple[int, int]] = []
    view = memoryview(data)
    idat_bytes, pos, steps = 0, 8, 0
    while True:
        steps += 1
        _refuse_overlong_walk("PNG", steps, data)
        _need(data, pos + 8, "PNG", "chunk header at byte {}", pos)
        length, kind = struct.unpack_from(">I4s", data, pos)
        name = kind.decode("latin-1")
        if length > 0x7FFFFFFF:
            raise ImageError(f"corrupt PNG: chunk {name!r} at byte {pos} declares {length} bytes")
        end = pos + 12 + length
        _need(data, end, "PNG", "chunk {!r} at byte {}", name, pos)
        if pos == 8 and kind != b"IHDR":
            raise ImageError(f"corrupt PNG: first chunk is {name!r}, not 'IHDR'")
        (crc,) = struct.unpack_from(">I", data, end - 4)
        if zlib.crc32(view[pos + 4 : end - 4]) != crc:
            raise ImageError(f"corrupt PNG: CRC mismatch in chunk {name!r} at byte {pos}")
        if kind == b"IHDR" and length >= 8:
            width, height = struct.unpack_from(">II", data, pos + 8)
            frames.append((width, height))
        elif kind == b"fcTL" and length >= 12:  # an APNG frame
            width, height = struct.unpack_from(">II", data, pos + 12)
            frames.append((width, height))
        elif kind == b"IDAT":
            idat_bytes += length
        elif kind == b"IEND":
            if frames:
                _check_png_data_size(data, idat_bytes)
            return ImageInfo("PNG", end, tuple(frames))
        pos = end


# --- GIF ----------------------------------------------------------------------------------------


def _skip_sub_blocks(data: bytes, pos: int, steps: list[int]) -> int:
    """Position after a chain of data sub-blocks (size byte + data) ending with a zero size;
    ``steps[0]`` counts the blocks walked in the whole file."""
    size = len(data)
    while True:
        steps[0] += 1
        _refuse_overlong_walk("GIF", steps[0], data)
        if pos >= size:
            raise ImageError(f"truncated GIF: data block at byte {pos} runs past the end ({size} bytes)")
        block = data[pos]
        pos += 1 + block
        if block == 0:
            return pos


def _color_table_bytes(flags: int) -> int:
    return 3 << ((flags & 0x07) + 1) if flags & 0x80 else 0


def _walk_gif(data: bytes) -> ImageInfo:
    _need(data, 13, "GIF", "the screen descriptor")
    screen_width, screen_height, flags = struct.unpack_from("<HHB", data, 6)
    frames = [(screen_width, screen_height)]
    pos = 13 + _color_table_bytes(flags)
    steps = [0]
    while True:
        if pos >= len(data):
            raise ImageError(f"truncated GIF: no trailer in {len(data)} bytes")
        block = data[pos]
        if block == 0x3B:
            if len(frames) == 1:
                raise ImageError("corrupt GIF: no image before the trailer")
            return ImageInfo("GIF", pos + 1, tuple(frames))
        if block == 0x21:  # extension: label, then sub-blocks
            pos = _skip_sub_blocks(data, pos + 2, steps)
        elif block == 0x2C:  # image descriptor: left, top, width, height, flags
            _need(data, pos + 10, "GIF", "image descriptor at byte {}", pos)
            width, height, flags = struct.unpack_from("<HHB", data, pos + 5)
            frames.append((width, height))
            pos = _skip_sub_blocks(data, pos + 10 + _color_table_bytes(flags) + 1, steps)  # +1: LZW code size
        else:
            raise ImageError(f"corrupt GIF: unexpected block 0x{block:02x} at byte {pos}")


# --- WebP ---------------------------------------------------------------------------------------


def _webp_chunks(data: bytes, start: int, stop: int) -> list[tuple[int, int]]:
    """The size each chunk in data[start:stop] declares, animation frames' chunks included. A stack,
    not recursion: frames nested ~1,500 deep in 30 KB once ran Python out of stack (issue 28)."""
    frames: list[tuple[int, int]] = []
    pending, steps = [(start, stop)], 0
    while pending:
        pos, end = pending.pop()
        while pos < end:
            steps += 1
            _refuse_overlong_walk("WEBP", steps, data)
            if pos + 8 > end:
                raise ImageError(f"truncated WEBP: chunk header at byte {pos} needs {pos + 8} bytes, got {end}")
            kind, length = struct.unpack_from("<4sI", data, pos)
            body, chunk_end = pos + 8, pos + 8 + length + (length & 1)
            name = kind.decode("latin-1")
            if body + length > end:
                raise ImageError(f"truncated WEBP: chunk {name!r} at byte {pos} needs {body + length} bytes, got {end}")
            if kind == b"VP8X" and length >= 10:
                frames.append((1 + _le24(data, body + 4), 1 + _le24(data, body + 7)))
            elif kind == b"ANMF" and length >= 16:
                frames.append((1 + _le24(data, body + 6), 1 + _le24(data, body + 9)))
                pending.append((body + 16, body + length))
            elif kind == b"VP8 ":
                if length < 10 or data[body + 3 : body + 6] != b"\x9d\x01\x2a":
                    raise ImageError(f"corrupt WEBP: bad VP8 frame header at byte {body}")
                width, height = struct.unpack_from("<HH", data, body + 6)
                frames.append((width & 0x3FFF, height & 0x3FFF))
            elif kind == b"VP8L":
                if length < 5 or data[body] != 0x2F:
                    raise ImageError(f"corrupt WEBP: bad VP8L header at byte {body}")
                (bits,) = struct.unpack_from("<I", data, body + 1)
                frames.append(((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1))
            pos = chunk_end
    return frames


def _le24(data: bytes, pos: int) -> int:
    return int.from_bytes(data[pos : pos + 3], "little")


def _walk_webp(data: bytes) -> ImageInfo:
    (riff_size,) = struct.unpack_from("<I", data, 4)
    end = 8 + riff_size
    _need(data, end, "WEBP", "the RIFF header")
    frames = _webp_chunks(data, 12, end)
    if not frames:
        raise ImageError("corrupt WEBP: no image chunk")
    return ImageInfo("WEBP", end, tuple(frames))


# --- BMP ----------------------------------------------------------------------------------------

_BMP_UNCOMPRESSED = (0, 3, 6)  # BI_RGB, BI_BITFIELDS, BI_ALPHABITFIELDS
# Run-length BMPs (BI_RLE8, BI_RLE4) are decoded by Pillow in Python: one of 104 bytes (one pixel then
# end-of-line per row) took 9 s (issue 28). No camera or browser writes them.
_BMP_RLE = (1, 2)


def _walk_bmp(data: bytes) -> ImageInfo:
    _need(data, 26, "BMP", "the header")
    (offset, header_size) = struct.unpack_from("<II", data, 10)
    if header_size == 12:  # OS/2 core header: 16-bit sizes, no compression
        width, height, _, bits = struct.unpack_from("<HHHH", data, 18)
        compression = 0
    elif header_size >= 40:
        _need(data, 14 + 40, "BMP", "the info header")
        width, height, _, bits, compression = struct.unpack_from("<iiHHI", data, 18)
    else:
        raise ImageError(f"corrupt BMP: info header of {header_size} bytes")
    height = abs(height)  # negative: rows stored top-down
    if compression in _BMP_UNCOMPRESSED:
        end = offset + (width * bits + 31) // 32 * 4 * height
    elif compression in _BMP_RLE:
        raise ImageError("run-length BMP is refused on purpose: its bytes do not bound what decoding it costs")
    else:
        raise ImageError(f"unsupported BMP compression {compression}")
    _need(data, end, "BMP", f"pixel data of {width}x{height} at {bits} bits")
    return ImageInfo("BMP", end, ((width, height),))


_WALKERS = {"JPEG": _walk_jpeg, "PNG": _walk_png, "GIF": _walk_gif, "WEBP": _walk_webp, "BMP": _walk_bmp}
