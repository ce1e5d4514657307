"""Image sizes read from file headers, so that no image is decoded before its size is known.

`header_size(data)` reads width and height from the first bytes of a PNG, JPEG, BMP, WebP or TIFF
file (None when the header is not one of those or is cut short). `check_pixels` refuses sizes over
`MAX_IMAGE_PIXELS` (8192 x 8192 = 67 megapixels) with one sentence: larger than any RGB-D camera
frame or sensible replacement background, and small enough that decoding stays under about 0.5 GB.
"""

from __future__ import annotations

import struct
import zlib

from sensors.errors import UserError

MAX_IMAGE_SIDE = 8192
MAX_IMAGE_PIXELS = MAX_IMAGE_SIDE * MAX_IMAGE_SIDE
LIMIT_TEXT = f"{MAX_IMAGE_SIDE}x{MAX_IMAGE_SIDE} pixels ({MAX_IMAGE_PIXELS / 1e6:.0f} megapixels)"
# A file larger than the biggest allowed image stored uncompressed at 16 bits x 4 channels is refused unread.
MAX_IMAGE_FILE_BYTES = MAX_IMAGE_PIXELS * 8 + (1 << 20)

_PNG = b"\x89PNG\r\n\x1a\n"
# JPEG start-of-frame markers (baseline, progressive, lossless, ...): not DHT (C4), JPG (C8), DAC (CC).
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def too_large(width: int, height: int) -> bool:
    return width < 0 or height < 0 or width * height > MAX_IMAGE_PIXELS


def check_pixels(width: int, height: int, what: str) -> None:
    """Raise UserError (exit 1) when `what` (e.g. "The colour image 'x.png'") is over the size limit."""
    if too_large(width, height):
        raise UserError(f"{what} is {width}x{height}, larger than the limit of {LIMIT_TEXT}: scale it down.")


def header_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the header bytes of a PNG, JPEG, BMP, WebP or TIFF file, else None."""
    try:
        if data.startswith(_PNG):
            if data[12:16] != b"IHDR":
                return None
            return struct.unpack(">II", data[16:24])
        if data.startswith(b"\xff\xd8"):
            return _jpeg_size(data)
        if data.startswith(b"BM") and len(data) >= 26:
            width, height = struct.unpack("<ii", data[18:26])
            return abs(width), abs(height)
        if data.startswith(b"RIFF") and data[8:12] == b"WEBP":
            return _webp_size(data)
        if data[:4] in (b"II*\x00", b"MM\x00*"):
            return _tiff_size(data)
    except struct.error:  # cut short
        return None
    return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:  # no length field
            pos += 2
            continue
        (length,) = struct.unpack(">H", data[pos + 2:pos + 4])
        if marker in _SOF:
            height, width = struct.unpack(">HH", data[pos + 5:pos + 9])
            return width, height
        if length < 2:
            return None
        pos += 2 + length
    return None


def _webp_size(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8X":
        w = int.from_bytes(data[24:27], "little") + 1
        h = int.from_bytes(data[27:30], "little") + 1
        return w, h
    if chunk == b"VP8 ":
        w, h = struct.unpack("<HH", data[26:30])
        return w & 0x3FFF, h & 0x3FFF
    if chunk == b"VP8L":
        (bits,) = struct.unpack("<I", data[21:25])
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    return None


def _tiff_size(data: bytes) -> tuple[int, int] | None:
    """Width and height of the first image (IFD) of a TIFF file, when its header bytes hold them."""
    order = "<" if data[:2] == b"II" else ">"
    (ifd,) = struct.unpack(order + "I", data[4:8])
    (count,) = struct.unpack(order + "H", data[ifd:ifd + 2])
    size: dict[int, int] = {}
    for k in range(min(count, 512)):
        entry = data[ifd + 2 + 12 * k: ifd + 14 + 12 * k]
        tag, kind = struct.unpack(order + "HH", entry[:4])
        if tag in (256, 257):
            fmt = "H" if kind == 3 else "I"
            (size[tag],) = struct.unpack(order + fmt, entry[8:10] if kind == 3 else entry[8:12])
    if 256 in size and 257 in size:
        return size[256], size[257]
    return None


def damage(data: bytes, jpeg_end: bool = True) -> str | None:
    """Why a PNG or JPEG file's bytes cannot be a whole image ('is corrupt: truncated ...'), else None.

    PNG: every chunk's length and CRC are checked up to IEND (no pixel is decoded). JPEG, with
    `jpeg_end`: the file must end with the end-of-image marker (trailing zero padding allowed); a cut
    JPEG otherwise decodes into a grey-filled picture without an error (off for photos, which may
    carry data after the image, e.g. motion photos). Other formats: None (not checked).
    """
    if data.startswith(_PNG):
        pos = len(_PNG)
        while pos + 12 <= len(data):
            length, kind = struct.unpack(">I4s", data[pos:pos + 8])
            end = pos + 12 + length
            if end > len(data):
                break
            if zlib.crc32(data[pos + 4:end - 4]) != struct.unpack(">I", data[end - 4:end])[0]:
                return f"is corrupt: a checksum error in its {kind.decode('latin-1')!r} chunk at byte {pos}"
            if kind == b"IEND":
                return None
            pos = end
        return f"is corrupt: truncated after {len(data)} bytes, before the end of the image"
    if jpeg_end and data.startswith(b"\xff\xd8") and not data.rstrip(b"\x00").endswith(b"\xff\xd9"):
        return f"is corrupt: truncated or damaged, its {len(data)} bytes do not end with the end-of-image marker"
    return None
