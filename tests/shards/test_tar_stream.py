"""shards.tar_stream: our tar header parser against tars that Python's tarfile writes."""
from __future__ import annotations

import io
import tarfile

import pytest

from shards.tar_stream import BLOCK, TarFormatError, octal, iter_members


def make_tar(members, fmt=tarfile.USTAR_FORMAT, extra=()) -> bytes:
    """A tar of (name, data) regular files, plus ``extra`` TarInfo objects (dirs, links)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        for ti in extra:
            tf.addfile(ti)
        for name, data in members:
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


class Trickle(io.RawIOBase):
    """A non-seekable stream that hands out at most a few bytes per read, as a slow socket does."""

    def __init__(self, data: bytes, most: int = 7):
        self.data, self.pos, self.most, self.reads = data, 0, most, 0

    def readable(self):
        return True

    def read(self, n=-1):
        self.reads += 1
        n = len(self.data) - self.pos if n < 0 else n
        k = min(n, 1 + self.reads % self.most)
        out = self.data[self.pos: self.pos + k]
        self.pos += len(out)
        return out

    def seek(self, *a):
        raise io.UnsupportedOperation("not seekable")


def payload(n: int, seed: int = 1) -> bytes:
    return bytes((seed * 31 + k) % 256 for k in range(n))


SIZES = [0, 1, 511, 512, 513, 1024, 3000]
MEMBERS = [(f"v_key.{i:05d}.jpg", payload(n, i)) for i, n in enumerate(SIZES)]


def test_every_member_with_its_exact_bytes_whatever_the_padding():
    got = list(iter_members(io.BytesIO(make_tar(MEMBERS)), lambda n: True))
    assert got == MEMBERS


@pytest.mark.parametrize("seekable", [True, False])
def test_unwanted_members_are_named_but_not_returned(seekable):
    want = {MEMBERS[2][0], MEMBERS[4][0]}
    got = list(iter_members(io.BytesIO(make_tar(MEMBERS)), want.__contains__, seekable=seekable))
    assert [n for n, _ in got] == [n for n, _ in MEMBERS]
    assert {n: d for n, d in got if d is not None} == {n: d for n, d in MEMBERS if n in want}


def test_a_stream_that_returns_short_reads_and_cannot_seek():
    stream = Trickle(make_tar(MEMBERS))
    assert list(iter_members(stream, lambda n: n.endswith("3.jpg") or n.endswith("6.jpg"))) == [
        (n, d if n.endswith(("3.jpg", "6.jpg")) else None) for n, d in MEMBERS]
    assert stream.reads > 100


@pytest.mark.parametrize("fmt", [tarfile.GNU_FORMAT, tarfile.PAX_FORMAT, tarfile.USTAR_FORMAT])
def test_long_names_in_every_format(fmt):
    # ustar keeps names up to 255 characters in its prefix field (split at a slash); GNU and pax
    # write longer ones in an extra member before the file's own header
    names = ["d" * 90 + "/" + "k" * 60 + ".00000.jpg"]
    if fmt != tarfile.USTAR_FORMAT:
        names += ["x" * 300 + ".00001.jpg", "ünïcödé_" + "y" * 120 + ".json"]
    members = [(n, payload(700, i)) for i, n in enumerate(names)] + [("short.00002.jpg", b"abc")]
    assert list(iter_members(io.BytesIO(make_tar(members, fmt)), lambda n: True)) == members


def test_directories_links_and_pax_globals_are_not_files():
    d = tarfile.TarInfo("adir")
    d.type = tarfile.DIRTYPE
    s = tarfile.TarInfo("alink")
    s.type, s.linkname = tarfile.SYMTYPE, "v_key.00000.jpg"
    data = make_tar(MEMBERS[:2], tarfile.PAX_FORMAT, extra=[d, s])
    seen = []
    got = list(iter_members(io.BytesIO(data), lambda n: seen.append(n) or True))
    assert got == MEMBERS[:2] and "adir" not in seen and "alink" not in seen


def test_the_gnu_base_256_size_field():
    assert octal(b"0000644\0") == 0o644
    assert octal(b"\0" * 12) == 0
    assert octal(bytes([0x80]) + (9 * 2**33).to_bytes(11, "big")) == 9 * 2**33   # > 8 GiB: no octal form


def test_a_corrupt_header_names_its_byte():
    data = bytearray(make_tar(MEMBERS))
    second = BLOCK                          # member 0 has no data: member 1's header follows it
    data[second + 10] ^= 0xFF
    with pytest.raises(TarFormatError, match=f"corrupt tar header at byte {second} \\(checksum mismatch\\)"):
        list(iter_members(io.BytesIO(bytes(data)), lambda n: True))


END = sum(BLOCK + -(-n // BLOCK) * BLOCK for n in SIZES)   # where the end-of-archive marker starts


@pytest.mark.parametrize("cut,match", [
    (END, f"no end-of-archive marker after byte {END}"),
    (3 * BLOCK + 100, r"partial header at byte 1536"),                # member 2's header (member 1: 1 byte)
    (2 * BLOCK + 100, r"wanted 512 bytes at byte 1024, got 100"),     # member 1's padded data
])
@pytest.mark.parametrize("stream", [io.BytesIO, Trickle])
def test_truncated_input_is_a_clear_error(cut, match, stream):
    data = make_tar(MEMBERS)
    assert data[END: END + 2 * BLOCK] == bytes(2 * BLOCK)
    with pytest.raises(TarFormatError, match=f"truncated tar: {match}"):
        list(iter_members(stream(data[:cut]), lambda n: True))
