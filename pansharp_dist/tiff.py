"""The TIFF container of a cloud-optimized GeoTIFF: tile encoding and the header.

Tiles are ``(TILE, TILE, bands)`` pixel-interleaved arrays (edge tiles padded),
compressed with ZSTD or DEFLATE at a chosen level (``ZSTD:9``, ``DEFLATE:6``: the
defaults of GDAL's COG driver), after TIFF's horizontal predictor (2) for integers or its
floating-point predictor (3, TIFF Technical Note 3) for floats; or stored raw.

:func:`cog_header` lays out the file as a COG: the TIFF header, GDAL's
structural-metadata ghost area, then every IFD (full resolution first, then
the overviews from largest to smallest), then the tile data from the smallest
overview to full resolution, row-major within each. It is classic TIFF when
every offset fits in 32 bits, BigTIFF otherwise.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

import numpy as np
from numcodecs import Zstd

TILE = 512
COMPRESSION_CODES = {"NONE": 1, "DEFLATE": 8, "ZSTD": 50000}
LEVELS = {"ZSTD": (1, 22, 9), "DEFLATE": (1, 9, 6)}
"""Each codec's levels: lowest, highest, and the default (GDAL's)."""


def codec_and_level(compress: str) -> tuple[str, int | None]:
    """``"ZSTD:1"`` -> ``("ZSTD", 1)``; a codec without a level gets its default; ``NONE`` has none.

    Raises:
        ValueError: an unknown codec, a level that is not a whole number, or one out of the codec's range.
    """
    codec, _, level = compress.upper().partition(":")
    if codec not in COMPRESSION_CODES:
        raise ValueError(f"unknown codec {codec!r}")
    if codec == "NONE":
        if level:
            raise ValueError("NONE takes no level")
        return codec, None
    low, high, default = LEVELS[codec]
    if not level:
        return codec, default
    if not level.isdigit() or not low <= int(level) <= high:
        raise ValueError(f"{codec} levels are {low} to {high}, got {level!r}")
    return codec, int(level)


_SAMPLE_FORMATS = {"u": 1, "i": 2, "f": 3}
_SHORT, _ASCII, _LONG, _LONG8 = 3, 2, 4, 16
_GHOST_BODY = (
    "LAYOUT=IFDS_BEFORE_DATA\nBLOCK_ORDER=ROW_MAJOR\nBLOCK_LEADER=SIZE_AS_UINT4\n"
    "BLOCK_TRAILER=LAST_4_BYTES_REPEATED\nKNOWN_INCOMPATIBLE_EDITION=NO \n"
)
GHOST = f"GDAL_STRUCTURAL_METADATA_SIZE={len(_GHOST_BODY):06d} bytes\n{_GHOST_BODY}".encode("ascii")
GEO_TAGS = (33550, 33922, 34264, 34735, 34736, 34737)
"""ModelPixelScale, ModelTiepoint, ModelTransformation and the GeoKey directory with its parameters."""


def predictor(dtype: np.dtype, compress: str) -> int:
    """TIFF predictor for ``dtype`` under ``compress``: 1 (none), 2 (integers) or 3 (floats)."""
    if codec_and_level(compress)[0] == "NONE":
        return 1
    return 3 if np.dtype(dtype).kind == "f" else 2


def encode_tile(tile: np.ndarray, compress: str) -> bytes:
    """The stored bytes of one ``(TILE, TILE, bands)`` tile: predictor, then ``compress`` (``ZSTD:LEVEL``,
    ``DEFLATE:LEVEL``, ``NONE``)."""
    tile = np.ascontiguousarray(tile, dtype=tile.dtype.newbyteorder("<"))
    codec, level = codec_and_level(compress)
    if level is None:  # NONE
        return tile.tobytes()
    raw = _predicted(tile).tobytes()
    if codec == "ZSTD":
        return Zstd(level=level).encode(raw)
    return zlib.compress(raw, level)


FRAME = 8
"""Bytes a tile's frame adds: its size as a uint32 before it, and its last 4 bytes repeated after it (GDAL's
block leader and trailer, which let readers check a ranged read)."""


def framed(data: bytes) -> bytes:
    """``data`` (one encoded tile, at least 4 bytes) in its frame."""
    return struct.pack("<I", len(data)) + data + data[-4:]


def _predicted(tile: np.ndarray) -> np.ndarray:
    """Each row of ``tile`` differenced sample by sample (predictor 2) or byte plane by byte plane (predictor 3)."""
    rows, width, bands = tile.shape
    if tile.dtype.kind == "f":
        size = tile.dtype.itemsize
        planes = tile.view(np.uint8).reshape(rows, width * bands, size)[:, :, ::-1]  # most significant byte first
        row = np.ascontiguousarray(planes.transpose(0, 2, 1)).reshape(rows, size * width * bands)
    else:
        row = tile.view(f"<u{tile.dtype.itemsize}").reshape(rows, width * bands)
    out = row.copy()
    out[:, bands:] -= row[:, :-bands]
    return out


@dataclass(frozen=True)
class Tag:
    """One IFD entry: ``code``, TIFF field ``kind`` (3 SHORT, 4 LONG, ...), ``count`` and little-endian ``value``."""

    code: int
    kind: int
    count: int
    value: bytes


def short_tag(code: int, *values: int) -> Tag:
    """A SHORT (uint16) tag."""
    return Tag(code, _SHORT, len(values), struct.pack(f"<{len(values)}H", *values))


def long_tag(code: int, *values: int) -> Tag:
    """A LONG (uint32) tag."""
    return Tag(code, _LONG, len(values), struct.pack(f"<{len(values)}I", *values))


def ascii_tag(code: int, text: str) -> Tag:
    """An ASCII tag (NUL-terminated)."""
    data = text.encode("ascii") + b"\0"
    return Tag(code, _ASCII, len(data), data)


def _offsets_tag(code: int, values: list[int], big: bool) -> Tag:
    fmt = "Q" if big else "I"
    return Tag(code, _LONG8 if big else _LONG, len(values), struct.pack(f"<{len(values)}{fmt}", *values))


def read_tags(data: bytes, codes: tuple[int, ...]) -> list[Tag]:
    """The tags in ``codes`` of the first IFD of the little-endian classic TIFF ``data``."""
    if data[:4] != b"II*\0":
        raise ValueError("not a little-endian classic TIFF")
    (at,) = struct.unpack_from("<I", data, 4)
    (count,) = struct.unpack_from("<H", data, at)
    sizes = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 11: 4, 12: 8}
    tags = []
    for n in range(count):
        code, kind, number, inline = struct.unpack_from("<HHI4s", data, at + 2 + 12 * n)
        if code in codes:
            length = sizes[kind] * number
            start = struct.unpack("<I", inline)[0] if length > 4 else None
            value = inline[:length] if start is None else data[start : start + length]
            tags.append(Tag(code, kind, number, value))
    return tags


@dataclass(frozen=True)
class Level:
    """One image of the COG: its size in pixels and its tiles' stored sizes in bytes, row-major."""

    width: int
    height: int
    tile_bytes: tuple[int, ...]


def cog_header(
    levels: list[Level], dtype: np.dtype, bands: int, compress: str, tags: list[Tag], *, bigtiff: bool = False
) -> bytes:
    """The bytes that start a COG: TIFF header, ghost area and IFDs, with the file offset of every tile.

    Args:
        levels: full resolution first, then each overview, smaller and smaller.
        dtype: the samples' dtype; ``bands`` samples per pixel.
        compress: ``ZSTD:LEVEL``, ``DEFLATE:LEVEL`` or ``NONE``.
        tags: extra tags of the full-resolution IFD (georeferencing, nodata).
        bigtiff: BigTIFF even when every offset fits in 32 bits.

    The tile data must follow the header, from the last level to the first,
    row-major within each, every tile in its :func:`framed` frame.
    """
    for big in (bigtiff, True):
        header = _layout(levels, dtype, bands, compress, tags, big, None)
        end = len(header) + sum(sum(level.tile_bytes) + FRAME * len(level.tile_bytes) for level in levels)
        if big or end < 2**32:
            offsets: list[list[int]]
            offsets, position = [[] for _ in levels], len(header)
            for index in reversed(range(len(levels))):
                for size in levels[index].tile_bytes:
                    offsets[index].append(position + 4)
                    position += size + FRAME
            return _layout(levels, dtype, bands, compress, tags, big, offsets)
    raise AssertionError("unreachable: BigTIFF holds any offset")


def _layout(levels, dtype, bands, compress, tags, big, offsets) -> bytes:
    dtype = np.dtype(dtype)
    out = bytearray(b"II" + (struct.pack("<HHHQ", 43, 8, 0, 0) if big else struct.pack("<HI", 42, 0)))
    out += GHOST
    out += b"\0" * (len(out) % 2)
    struct.pack_into("<Q" if big else "<I", out, 8 if big else 4, len(out))
    for index, level in enumerate(levels):
        fields = [
            long_tag(254, 0 if index == 0 else 1),
            long_tag(256, level.width),
            long_tag(257, level.height),
            short_tag(258, *[dtype.itemsize * 8] * bands),
            short_tag(259, COMPRESSION_CODES[codec_and_level(compress)[0]]),
            short_tag(262, 1),
            short_tag(277, bands),
            short_tag(284, 1),
            short_tag(322, TILE),
            short_tag(323, TILE),
            _offsets_tag(324, offsets[index] if offsets else [0] * len(level.tile_bytes), big),
            _offsets_tag(325, list(level.tile_bytes), big),
            short_tag(339, *[_SAMPLE_FORMATS[dtype.kind]] * bands),
        ]
        if predictor(dtype, compress) != 1:
            fields.append(short_tag(317, predictor(dtype, compress)))
        if bands > 1:
            fields.append(short_tag(338, *[0] * (bands - 1)))
        extra = tags if index == 0 else [t for t in tags if t.code not in GEO_TAGS]
        out += _ifd(fields + extra, len(out), big, last=index == len(levels) - 1)
        out += b"\0" * (len(out) % 2)
    return bytes(out)


def _ifd(tags: list[Tag], at: int, big: bool, last: bool) -> bytes:
    """One IFD written at file offset ``at``, its out-of-line values right after it (word aligned)."""
    count_fmt, word_fmt, inline = ("<Q", "<Q", 8) if big else ("<H", "<I", 4)
    tags = sorted(tags, key=lambda t: t.code)
    head = struct.calcsize(count_fmt) + (2 * 2 + 2 * inline) * len(tags) + inline
    entries, extra = bytearray(), bytearray()
    for tag in tags:
        if len(tag.value) <= inline:
            field = tag.value.ljust(inline, b"\0")
        else:
            field = struct.pack(word_fmt, at + head + len(extra))
            extra += tag.value + b"\0" * (len(tag.value) % 2)
        entries += struct.pack("<HH", tag.code, tag.kind) + struct.pack(word_fmt, tag.count) + field
    following = 0 if last else at + head + len(extra) + (head + len(extra)) % 2
    return struct.pack(count_fmt, len(tags)) + bytes(entries) + struct.pack(word_fmt, following) + bytes(extra)
