"""shards.sources: local files, memory:// and http:// read alike; remote failures retried, resumed and named."""
from __future__ import annotations

import io
import tarfile
import uuid

import fsspec
import pytest

from shards import sources
from shards.source_reads import RangeReader, open_stream
from shards.sources import SourceError, retrying
from shards.tar_stream import iter_members
from tests.servers import Faults, faulty_http_server, free_port, range_http_server

FAST = 0.001   # backoff in these tests


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A folder with a small tar of odd-sized members (not multiples of 512) and a blob of known bytes."""
    root = tmp_path_factory.mktemp("site")
    with tarfile.open(root / "small.tar", "w", format=tarfile.USTAR_FORMAT) as tf:
        for i, n in enumerate([700, 1, 5000, 513, 20_000, 0, 3333]):
            ti = tarfile.TarInfo(f"sample{i:02d}.{i:05d}.jpg")
            ti.size = n
            tf.addfile(ti, io.BytesIO(bytes((i * 7 + k) % 251 for k in range(n))))
    (root / "blob.bin").write_bytes(bytes(k % 253 for k in range(200_000)))
    return root


def members(path):
    with tarfile.open(path) as tf:
        return [(m.name, tf.extractfile(m).read()) for m in tf.getmembers()]


@pytest.fixture
def memory_copy(site):
    fs = fsspec.filesystem("memory")
    base = f"/test-sources-{uuid.uuid4().hex[:8]}"
    for p in site.iterdir():
        fs.pipe_file(f"{base}/{p.name}", p.read_bytes())
    yield f"memory://{base}"
    fs.rm(base, recursive=True)


def one_line_naming(exc_info, location):
    text = str(exc_info.value)
    assert "\n" not in text and location in text, text
    return text


# -- the three kinds of location read alike ----------------------------------------------------
@pytest.mark.parametrize("kind", ["local", "file_url", "memory", "http"])
def test_streams_and_ranges_read_the_same_bytes_everywhere(site, memory_copy, kind):
    want = (site / "blob.bin").read_bytes()
    with range_http_server(site) as http:
        base = {"local": str(site), "file_url": f"file://{site}", "memory": memory_copy, "http": http}[kind]
        with open_stream(sources.join(base, "blob.bin")) as f:
            assert f.read(1000) == want[:1000]
            assert f.read() == want[1000:]
            assert f.read(10) == b""
        with RangeReader(sources.join(base, "blob.bin")) as r:
            assert r.read(5, 700) == want[5:700]
            assert r.read_many([(0, 10), (150_000, 150_100), (199_990, 200_000)]) == \
                [want[0:10], want[150_000:150_100], want[199_990:200_000]]
        with open_stream(sources.join(base, "small.tar")) as f:
            got = [(n, d) for n, d in iter_members(f, lambda n: True)]
        assert got == members(site / "small.tar")


@pytest.mark.parametrize("kind", ["local", "memory", "http"])
def test_a_missing_file_is_named(site, memory_copy, kind):
    with range_http_server(site) as http:
        base = {"local": str(site), "memory": memory_copy, "http": http}[kind]
        url = sources.join(base, "nope.tar")
        with pytest.raises(SourceError, match="shard not found") as e:
            open_stream(url, backoff=FAST)
        one_line_naming(e, url)
        with pytest.raises(SourceError, match="shard not found") as e:
            RangeReader(url, backoff=FAST).read(0, 10)
        one_line_naming(e, url)
        if kind == "http":
            assert "(HTTP 404)" in str(e.value)


def test_a_range_past_the_end_is_named(site, memory_copy):
    for base in (str(site), memory_copy):
        url = sources.join(base, "blob.bin")
        with pytest.raises(SourceError, match=r"asked for bytes 199000\.\.201000, got 1000 bytes") as e:
            RangeReader(url).read(199_000, 201_000)
        one_line_naming(e, url)


def test_an_unknown_scheme_or_missing_backend_is_named():
    with pytest.raises(SourceError, match=r"cannot read nosuchscheme://bucket/a.tar: ValueError") as e:
        open_stream("nosuchscheme://bucket/a.tar")
    one_line_naming(e, "nosuchscheme://bucket/a.tar")


def test_timeouts_reach_the_http_client():
    fs, _ = sources.filesystem("http://127.0.0.1:9/x.tar", timeout=7.5)
    t = fs.client_kwargs["timeout"]
    assert (t.sock_read, t.sock_connect, t.total) == (7.5, 7.5, None)
    assert sources.storage_options("memory://a", 3.0) == {}


# -- retries -----------------------------------------------------------------------------------
def test_transient_errors_are_retried_with_doubling_backoff(monkeypatch):
    slept = []
    monkeypatch.setattr(sources.time, "sleep", slept.append)
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionResetError(104, "Connection reset by peer")
        return b"ok"

    assert retrying(flaky, "http://h/a.tar", timeout=1, retries=3, backoff=0.25) == b"ok"
    assert slept == [0.25, 0.5]
    slept.clear()

    def always_reset():
        raise ConnectionResetError(104, "Connection reset by peer")

    with pytest.raises(SourceError, match=r"http://h/a.tar: connection failed: ConnectionResetError.*gave up after 3 attempts"):
        retrying(always_reset, "http://h/a.tar", timeout=1, retries=2, backoff=0.25)
    assert slept == [0.25, 0.5]


def test_errors_that_cannot_heal_are_not_retried(monkeypatch):
    monkeypatch.setattr(sources.time, "sleep", lambda s: pytest.fail("slept before a retry"))

    def denied():
        raise PermissionError("denied")

    with pytest.raises(SourceError, match=r"cannot read s3://b/a.tar: PermissionError: denied$"):
        retrying(denied, "s3://b/a.tar", timeout=1, retries=5)


def test_http_500_is_reported_as_500_with_the_url_after_bounded_retries(site):
    faults = Faults(statuses=[500] * 100)
    with faulty_http_server(site, faults) as base:
        url = base + "/small.tar"
        with pytest.raises(SourceError, match=r"HTTP 500 Internal Server Error \(gave up after 3 attempts\)") as e:
            open_stream(url, retries=2, backoff=FAST)
        assert "404" not in one_line_naming(e, url)
        n = len(faults.requests)
        with pytest.raises(SourceError, match="HTTP 500") as e:
            RangeReader(url, retries=2, backoff=FAST).read(0, 512)
        one_line_naming(e, url)
        assert len(faults.requests) - n == 3            # cat_file: one request per attempt


def test_a_client_error_status_is_not_retried(site):
    faults = Faults(statuses=[403] * 100)
    with faulty_http_server(site, faults) as base:
        with pytest.raises(SourceError, match=r"cannot read http://\S+/blob.bin: HTTP 403 Forbidden$"):
            RangeReader(base + "/blob.bin", retries=5, backoff=FAST).read(0, 10)
        assert len(faults.requests) == 1


def test_transient_5xx_heal_on_retry(site):
    want = (site / "blob.bin").read_bytes()
    faults = Faults(statuses=[503, 502, 500])
    with faulty_http_server(site, faults) as base:
        with open_stream(base + "/blob.bin", retries=3, backoff=FAST) as f:
            assert f.read() == want
        faults.statuses, faults.requests = [502], []
        assert RangeReader(base + "/blob.bin", retries=1, backoff=FAST).read(100, 200) == want[100:200]
        assert len(faults.requests) == 2


def test_a_timeout_names_the_url_and_the_limit(site):
    faults = Faults(stall_s=1.0, stall_gets=100)
    with faulty_http_server(site, faults) as base:
        url = base + "/blob.bin"
        with pytest.raises(SourceError, match=r"no data within the 0\.2 s I/O timeout \(raise it with "
                                              r"data.io_timeout\) \(gave up after 2 attempts\)") as e:
            with open_stream(url, timeout=0.2, retries=1, backoff=FAST) as f:
                f.read()
        one_line_naming(e, url)
        with pytest.raises(SourceError, match=r"0\.2 s I/O timeout") as e:
            RangeReader(url, timeout=0.2, retries=0).read(0, 10)
        one_line_naming(e, url)


def test_one_stalled_request_is_retried(site):
    want = (site / "blob.bin").read_bytes()
    with faulty_http_server(site, Faults(stall_s=0.6, stall_gets=1)) as base:
        assert RangeReader(base + "/blob.bin", timeout=0.2, retries=1, backoff=FAST).read(0, 1000) == want[:1000]


# -- short reads and broken streams ------------------------------------------------------------
def test_a_slow_server_with_short_reads_is_read_to_the_end(site):
    faults = Faults(chunk=97, chunk_delay=0.0005)       # pieces smaller than a tar header block
    with faulty_http_server(site, faults) as base:
        with open_stream(base + "/small.tar") as f:
            got = list(iter_members(f, lambda n: True))
    assert got == members(site / "small.tar")


@pytest.mark.parametrize("ranges", [True, False])
def test_a_stream_cut_mid_file_resumes_at_the_byte_it_reached(site, ranges):
    want = (site / "blob.bin").read_bytes()
    faults = Faults(cut_after=70_000, cut_gets=1, cut_delay=0.3, ranges=ranges, chunk=10_000)
    with faulty_http_server(site, faults) as base:
        with open_stream(base + "/blob.bin", retries=2, backoff=FAST) as f:
            head = f.read(50_000)
            rest = f.read()
            assert head + rest == want
            assert f.reopened == 1
    gets = [r for m, _, r in faults.requests if m == "GET"]
    assert gets[0] is None and len(gets) == 2
    assert gets[1] == "bytes=70000-"        # the resume asks for the rest, from the byte reached


def test_a_connection_reset_is_retried(site):
    want = (site / "blob.bin").read_bytes()
    faults = Faults(cut_after=40_000, cut_gets=2, cut_rst=True, chunk=10_000)
    with faulty_http_server(site, faults) as base:
        with open_stream(base + "/blob.bin", retries=2, backoff=FAST) as f:
            assert f.read() == want


def test_a_stream_that_keeps_breaking_gives_up_naming_the_url(site):
    faults = Faults(cut_after=0, cut_gets=100, cut_rst=True)   # no connection ever delivers a byte
    with faulty_http_server(site, faults) as base:
        url = base + "/blob.bin"
        with pytest.raises(SourceError, match=r"connection failed: .*\(gave up after 3 attempts\)") as e:
            with open_stream(url, retries=2, backoff=FAST) as f:
                f.read()
        one_line_naming(e, url)


def test_a_refused_connection_is_not_taken_for_a_missing_file():
    url = f"http://127.0.0.1:{free_port()}/a.tar"        # nothing listens there
    with pytest.raises(SourceError, match=r"connection failed: ClientConnectorError.*\(gave up after 2 attempts\)") as e:
        open_stream(url, retries=1, backoff=FAST)
    assert "not found" not in one_line_naming(e, url)
