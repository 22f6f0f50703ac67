"""What an encoded image declares about itself, read from its header before any pixel is decoded.

One table (:data:`FORMATS`) says where each format keeps its signature and its width and height;
one rule (:func:`decoded_pixels`) says how many pixels a decode of it holds in memory, which the
pixel budget (:data:`DEFAULT_MAX_PIXELS`) bounds. Two readers use them: :func:`read_header` here,
plain Python on the first bytes of a file (the folder scan checks millions of files; a TensorFlow
op per file would cost more than the read), and ``kerasnets.data.transforms.check_encoded``, the
same parse as graph ops (it runs inside ``tf.data`` and the SavedModel's ``serve_bytes``, where no
Python runs). ``tests/test_hostile_inputs.py`` checks both against PIL on the same files.

Pure Python: no TensorFlow import.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import BinaryIO

__all__ = ["DEFAULT_MAX_PIXELS", "END_MARKERS", "TRUNCATED", "FORMATS", "JPEG_SOF", "JPEG_PROGRESSIVE_SOF", "JPEG_HEADER_LIMIT", "JPEG_MAX_STEPS",
           "ImageHeader", "read_header", "decoded_pixels", "at_eighth", "budget_message", "over_budget",
           "check_max_pixels", "find_jpeg_end", "NOT_AN_IMAGE", "NO_JPEG_FRAME", "WEBP_CHUNKS", "WEBP_HEADER",
           "NO_WEBP_CHUNK"]

#: Default pixel budget: PIL's ``Image.MAX_IMAGE_PIXELS`` (what timm and torchvision users get),
#: 89,478,485 pixels: an RGB image of 268 MB, under 1 GB through crop and resize. Baseline JPEGs
#: count at 1/8 scale (see :func:`decoded_pixels`), so every baseline JPEG (at most 65,535 px a
#: side) fits; a PNG, GIF or BMP above it, or a progressive JPEG, is refused before decoding.
DEFAULT_MAX_PIXELS = 89_478_485

#: format -> the bytes its file ends with (a JPEG's end-of-image marker may be followed by a motion
#: photo's MP4 or padding: it is then searched for after the scan data), and why a file without
#: them is refused: the one rule of both readers (``files.check_image_file`` on files,
#: ``transforms.check_encoded`` on encoded tensors).
END_MARKERS = {"JPEG": b"\xff\xd9", "PNG": b"IEND", "GIF": b";"}
TRUNCATED = {"JPEG": "truncated JPEG (no end-of-image marker after its scan data)",
             "PNG": "truncated PNG (no IEND chunk)", "GIF": "truncated GIF (no trailer)"}

#: format -> (signatures, (width offset, width bytes, height offset, height bytes), byte order, signed).
#: JPEG keeps its size in a start-of-frame segment found by walking the markers (no fixed offset).
FORMATS = {
    "PNG": ((b"\x89PNG\r\n\x1a\n",), (16, 4, 20, 4), "big", False),  # IHDR
    "GIF": ((b"GIF87a", b"GIF89a"), (6, 2, 8, 2), "little", False),  # logical screen descriptor
    "BMP": ((b"BM",), (18, 4, 22, 4), "little", True),  # BITMAPINFOHEADER; a negative height is top-down
    "JPEG": ((b"\xff\xd8",), None, "big", False),
    "WebP": ((b"RIFF",), "webp", "little", False),  # RIFF + "WEBP"; the size is in its first chunk (WEBP_CHUNKS)
}
#: WebP's first chunk -> where its canvas size is: (width offset, bytes, height offset, bytes, mask,
#: added). VP8X (extended): 24-bit width-1 and height-1; VP8 (lossy): 14-bit width and height after
#: the key frame's start code; VP8L (lossless): 14-bit width-1 and height-1 packed in 4 bytes from
#: byte 21 (the height is read from those bytes shifted right by 14 bits, marked by offset -1).
WEBP_CHUNKS = {
    b"VP8X": (24, 3, 27, 3, 0xFFFFFF, 1),
    b"VP8 ": (26, 2, 28, 2, 0x3FFF, 0),
    b"VP8L": (21, 4, -1, 4, 0x3FFF, 1),
}
#: Bytes a WebP needs for its size: RIFF header, "WEBP", the first chunk's header and size fields.
WEBP_HEADER = 30
#: Start-of-frame markers (the byte after 0xFF) that carry height and width: SOF0-3, 5-7, 9-11, 13-15.
JPEG_SOF = tuple(c for c in range(0xC0, 0xD0) if c not in (0xC4, 0xC8, 0xCC))
#: Progressive SOFs: libjpeg buffers every DCT coefficient of the whole image, at any output scale.
JPEG_PROGRESSIVE_SOF = (0xC2, 0xC6, 0xCA, 0xCE)
#: How far into a JPEG its start-of-frame may lie (EXIF, XMP and ICC segments come first), and how
#: many markers and fill bytes the walk to it reads at most (real files: under 30).
JPEG_HEADER_LIMIT = 1 << 20
JPEG_MAX_STEPS = 1000
NOT_AN_IMAGE = "not a JPEG/PNG/BMP/GIF/WebP file"
NO_WEBP_CHUNK = "corrupt WebP header (its first chunk is not VP8, VP8L or VP8X)"
NO_JPEG_FRAME = "corrupt JPEG header (no start-of-frame segment)"


@dataclass(frozen=True)
class ImageHeader:
    """An encoded image's format, declared size, and (JPEG) whether it is progressive and where its data starts."""

    format: str
    height: int
    width: int
    progressive: bool = False
    data_offset: int = 0  # JPEG: first byte of the scan data (after the start-of-scan segment)


def decoded_pixels(header: ImageHeader, cropped: bool = True) -> int:
    """Pixels a decode of ``header``'s image holds in memory at most, the quantity the budget bounds.

    Baseline JPEGs read through the crops (``cropped``): the pixels at 1/8 scale. The crops decode
    only a window, downscaled in the DCT domain by the largest of 2, 4, 8 that keeps the output
    size (``transforms.dct_ratio``): a window of at least 8x the output decodes at 1/8, a smaller
    one at under 2x the output's side. Progressive JPEGs (their coefficient buffer is full size),
    other formats, and any full-resolution decode (``cropped=False``): every pixel.
    """
    if header.format == "JPEG" and not header.progressive and cropped:
        return at_eighth(header.height, header.width)
    return header.height * header.width


def at_eighth(height, width):
    """Pixels of a ``height`` x ``width`` JPEG decoded at 1/8 scale (ints or integer tensors)."""
    return -(-height // 8) * -(-width // 8)


def budget_message(what, width, height, pixels, max_pixels):
    """The over-budget reason, from strings (Python ``str`` or TensorFlow string tensors: one wording for both)."""
    return (what + " of " + width + "x" + height + " pixels decodes " + pixels + " pixels, over the pixel budget "
            "max_pixels=" + max_pixels + "; pass a larger max_pixels (--max-pixels) or downscale the file")


def check_max_pixels(max_pixels: int) -> int:
    """``max_pixels`` as an int; ValueError unless it is a positive integer."""
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels < 1:
        raise ValueError(f"max_pixels must be a positive integer (pixels decoded per image; default "
                         f"{DEFAULT_MAX_PIXELS:,}, PIL's limit), got {max_pixels!r}")
    return max_pixels


def over_budget(header: ImageHeader, max_pixels: int) -> str | None:
    """Why ``header``'s image is refused by the pixel budget (or has no pixels), or None if it fits."""
    if header.height <= 0 or header.width <= 0:
        return f"corrupt {header.format} header (declares {header.width}x{header.height} pixels)"
    pixels = decoded_pixels(header)
    if pixels > max_pixels:
        what = "progressive JPEG" if header.progressive else header.format
        return budget_message(what, str(header.width), str(header.height), str(pixels), str(max_pixels))
    return None


def _jpeg_frame(handle: BinaryIO) -> ImageHeader | str:
    """Walk a JPEG's marker segments from byte 2 to its start-of-frame (the graph walk does the same)."""
    pos, frame = 2, None
    for _ in range(JPEG_MAX_STEPS):
        if pos >= JPEG_HEADER_LIMIT:
            break
        handle.seek(pos)
        marker = handle.read(4)
        if len(marker) < 4 or marker[0] != 0xFF:
            break
        if marker[1] == 0xFF:  # fill byte before a marker
            pos += 1
            continue
        length = struct.unpack(">H", marker[2:])[0]
        if marker[1] in JPEG_SOF and frame is None:
            size = handle.read(5)
            if len(size) < 5:
                return NO_JPEG_FRAME
            height, width = struct.unpack(">HH", size[1:])
            frame = ImageHeader("JPEG", height, width, marker[1] in JPEG_PROGRESSIVE_SOF, pos + 2 + length)
        if marker[1] == 0xDA and frame is not None:  # start of scan: entropy-coded data follows
            return ImageHeader("JPEG", frame.height, frame.width, frame.progressive, pos + 2 + length)
        if marker[1] in (0xD9, 0xDA) or length < 2:  # end of image, or scan data before any frame
            break
        pos += 2 + length
    return frame or NO_JPEG_FRAME


def _webp(head: bytes) -> ImageHeader | str:
    """A WebP's canvas size from its first chunk (:data:`WEBP_CHUNKS`; the graph reader does the same)."""
    if head[8:12] != b"WEBP":
        return NOT_AN_IMAGE  # another RIFF file (WAV, AVI)
    if len(head) < WEBP_HEADER:
        return f"truncated WebP (header cut at {len(head)} bytes)"
    if head[12:16] not in WEBP_CHUNKS:
        return NO_WEBP_CHUNK
    w_at, w_len, h_at, h_len, mask, added = WEBP_CHUNKS[head[12:16]]
    width = int.from_bytes(head[w_at:w_at + w_len], "little")
    height = width >> 14 if h_at < 0 else int.from_bytes(head[h_at:h_at + h_len], "little")
    return ImageHeader("WebP", (height & mask) + added, (width & mask) + added)


def read_header(handle: BinaryIO) -> ImageHeader | str:
    """The header of the image file open in ``handle`` (binary, seekable), or why it has none readable."""
    head = handle.read(WEBP_HEADER)
    if not head:
        return "zero bytes"
    kind = next((k for k, (magics, *_) in FORMATS.items() if any(head.startswith(m) for m in magics)), None)
    if kind is None:
        return NOT_AN_IMAGE
    _, fields, order, signed = FORMATS[kind]
    if fields is None:
        return _jpeg_frame(handle)
    if fields == "webp":
        return _webp(head)
    w_at, w_len, h_at, h_len = fields
    if len(head) < h_at + h_len:
        return f"truncated {kind} (header cut at {len(head)} bytes)"
    width = int.from_bytes(head[w_at:w_at + w_len], order, signed=signed)
    height = int.from_bytes(head[h_at:h_at + h_len], order, signed=signed)
    return ImageHeader(kind, abs(height), width)


def find_jpeg_end(handle: BinaryIO, start: int, chunk: int = 1 << 20) -> int:
    """Offset of the first end-of-image marker (FF D9) at or after ``start``, or -1.

    After the start-of-frame only entropy-coded data follows, where an 0xFF byte is always
    followed by 0x00 or a restart/segment marker, so the first FF D9 there ends the image; what
    comes after it (a motion photo's MP4, padding) is not the JPEG's.
    """
    handle.seek(start)
    carry = b""
    offset = start
    while True:
        block = handle.read(chunk)
        if not block:
            return -1
        found = (carry + block).find(END_MARKERS["JPEG"])
        if found >= 0:
            return offset - len(carry) + found
        carry = block[-1:]
        offset += len(block)
