"""shards.store: the same writes into a local folder and into an fsspec URL (memory://)."""
from __future__ import annotations

import uuid

import fsspec
import pytest

from shards import store
from shards.sources import join
from shards.writer import ShardWriter, read_sidecar, write_sidecar


@pytest.fixture(params=["local", "memory"])
def folder(request, tmp_path):
    if request.param == "local":
        yield str(tmp_path / "out")
        return
    url = f"memory://store-{uuid.uuid4().hex[:8]}/out"
    yield url
    fsspec.filesystem("memory").rm(url[len("memory://"):].rsplit("/", 1)[0], recursive=True)


def test_files_are_written_read_listed_and_removed_alike(folder):
    assert store.listdir(folder) == [] and store.makedirs(folder) and not store.makedirs(folder)
    store.write_bytes(join(folder, "a.json"), b"{}")
    assert store.read_bytes(join(folder, "a.json")) == b"{}" and store.size(join(folder, "a.json")) == 2
    assert store.read_bytes(join(folder, "none")) is None and store.size(join(folder, "none")) is None
    assert store.create_exclusive(join(folder, ".lock"), b"host 1\n")
    assert not store.create_exclusive(join(folder, ".lock"), b"host 2\n")
    assert store.read_bytes(join(folder, ".lock")) == b"host 1\n"
    assert store.listdir(folder) == [".lock", "a.json"]
    store.remove(join(folder, ".lock"))
    store.remove(join(folder, "a.json"))
    store.remove(join(folder, "a.json"))          # nothing there is fine
    store.remove_empty_folder(folder)
    assert store.listdir(folder) == []


def test_a_tar_appears_only_when_committed_and_its_sidecar_reads_back(folder):
    store.makedirs(folder)
    tar = join(folder, "x-000000.tar")
    with ShardWriter(tar) as w:
        w.add_sample("k", {"a": 1}, [b"\xff\xd8jpeg"])
        assert store.size(tar) is None, "a tar is invisible until its commit"
        size = w.commit()
    assert store.size(tar) == size and not w.tmp.exists()
    with pytest.raises(RuntimeError):
        with ShardWriter(join(folder, "y-000001.tar")) as w2:
            w2.add_sample("k", {}, [b"x"])
            raise RuntimeError("a transcode failed")
    assert store.size(join(folder, "y-000001.tar")) is None and not w2.tmp.exists()
    write_sidecar(join(folder, "x-000000.json"), {"tar_size": size})
    assert read_sidecar(join(folder, "x-000000.json"))["tar_size"] == size
    store.write_bytes(join(folder, "x-000000.json"), b'{"format_version": 1, "checksum": "edited"}')
    assert read_sidecar(join(folder, "x-000000.json")) is None


@pytest.mark.parametrize("url, named", [("https://host/shards", "https:// cannot be written"),
                                        ("zip://a.zip", "zip:// cannot be written"),
                                        ("nosuch://b/x", "unknown URL scheme nosuch://")])
def test_unwritable_urls_are_named(url, named):
    with pytest.raises(store.StoreError, match=named):
        store.check_writable(url)
    store.check_writable("memory://fine/x")
    store.check_writable("/a/local/folder")
