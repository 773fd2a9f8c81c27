"""Reading and writing the IDX array format (MNIST, Fashion-MNIST), gzip-compressed or not.

An IDX file is: two zero bytes, one type byte, one byte with the number of dimensions ``n``,
``n`` big-endian uint32 sizes, then the values in C order, big-endian.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path
from typing import Final

import numpy as np

_GZIP_MAGIC: Final = b"\x1f\x8b"
_DTYPES: Final[dict[int, np.dtype[np.generic]]] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


class IdxFormatError(ValueError):
    """The bytes are not a well-formed IDX array."""


def read_idx(path: Path) -> np.ndarray:
    """The array stored in the IDX file at ``path``, decompressed if it is gzip data.

    The result has native byte order. Raises :class:`IdxFormatError` for malformed content and
    ``OSError`` when the file cannot be read.
    """
    raw = path.read_bytes()
    if raw[:2] == _GZIP_MAGIC:
        raw = gzip.decompress(raw)
    return parse_idx(raw)


def parse_idx(raw: bytes) -> np.ndarray:
    """The array encoded by the IDX bytes ``raw``."""
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise IdxFormatError("missing IDX magic number")
    type_code, ndim = raw[2], raw[3]
    if type_code not in _DTYPES:
        raise IdxFormatError(f"unknown IDX type code 0x{type_code:02x}")
    header_len = 4 + 4 * ndim
    if len(raw) < header_len:
        raise IdxFormatError("truncated IDX header")
    shape = struct.unpack(f">{ndim}I", raw[4:header_len])
    dtype = _DTYPES[type_code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header_len != expected:
        raise IdxFormatError(f"IDX data has {len(raw) - header_len} bytes, expected {expected}")
    data = np.frombuffer(raw, dtype=dtype, offset=header_len).reshape(shape)
    return data.astype(dtype.newbyteorder("="))


def encode_idx(array: np.ndarray) -> bytes:
    """The IDX encoding of ``array`` (used to write small test fixtures)."""
    codes = {dtype.newbyteorder("="): code for code, dtype in _DTYPES.items()}
    native = array.dtype.newbyteorder("=")
    if native not in codes:
        raise IdxFormatError(f"dtype {array.dtype} has no IDX type code")
    header = bytes([0, 0, codes[native], array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(native.newbyteorder(">")).tobytes()
