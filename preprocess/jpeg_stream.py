"""Split ffmpeg's image2pipe output (JPEGs back to back) into one bytes object per frame.

Searching for FFD9 alone is not safe: the marker walk skips each segment by its declared length and
scans entropy-coded data honouring byte stuffing (FF00) and restart markers (FFD0-FFD7), so a
payload that happens to hold FFD9 cannot cut a frame short.
"""
from __future__ import annotations

import re

SOI, EOI, SOS = 0xD8, 0xD9, 0xDA
_STANDALONE = {0x01, *range(0xD0, 0xD8)}


class JpegStreamError(ValueError):
    pass


# The marker that ends entropy-coded data: FF followed by anything but a stuffed 00, a restart
# marker (D0-D7), TEM (01) or another FF (fill bytes; the last FF of a run is the marker's). One regex search
# in C instead of a Python step per FF: frames are mostly entropy-coded data, full of stuffed FF00.
_SEGMENT_END = re.compile(rb"\xff[^\x00\x01\xd0-\xd7\xff]")


def _scan_entropy(buf: bytes, i: int) -> int:
    """Index of the marker that ends the entropy-coded segment starting at ``i``."""
    m = _SEGMENT_END.search(buf, i)
    if m is None:
        raise JpegStreamError("truncated JPEG: entropy-coded data runs to the end of the stream")
    return m.start()


def jpeg_end(buf: bytes, start: int) -> int:
    """End offset (exclusive) of the JPEG that starts at ``start``."""
    if buf[start:start + 2] != b"\xff\xd8":
        raise JpegStreamError(f"no JPEG start marker at byte {start}")
    i = start + 2
    n = len(buf)
    while i < n:
        if buf[i] != 0xFF:
            raise JpegStreamError(f"expected a marker at byte {i}, found 0x{buf[i]:02x}")
        while i < n and buf[i] == 0xFF:
            i += 1
        if i >= n:
            break
        marker = buf[i]
        i += 1
        if marker == EOI:
            return i
        if marker in _STANDALONE:
            continue
        if i + 2 > n:
            break
        i += int.from_bytes(buf[i:i + 2], "big")
        if marker == SOS:
            i = _scan_entropy(buf, i)
    raise JpegStreamError("truncated JPEG: stream ends before the end-of-image marker")


def split_jpegs(buf: bytes) -> list[bytes]:
    frames = []
    pos = 0
    while pos < len(buf):
        end = jpeg_end(buf, pos)
        frames.append(buf[pos:end])
        pos = end
    return frames
