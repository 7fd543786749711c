"""A rebuild never leaves a mixed folder; bad values and unwritable outputs are refused before
anything is written; memory:// is written like any other fsspec URL."""
from __future__ import annotations

import glob
import importlib.util
import shutil
import uuid

import pytest

from preprocess.build_shards import main as build
from shards.format import INDEX_NAME
from shards.index import read_index
from shards.verify import main as verify
from tests.preprocess.test_preprocess_faults import _dataset

CLASSES = {"Alpha": [("v_Alpha_g01_c01", 20), ("v_Alpha_g02_c01", 18)],
           "Beta": [("v_Beta_g01_c01", 19), ("v_Beta_g02_c01", 17)]}


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    return _dataset(tmp_path_factory.mktemp("rebuild"), CLASSES, size=(48, 64))


def args(videos, out, *extra):
    v, lists = videos
    return ["--dataset", "ucf101", "--videos", str(v), "--annotations", str(lists), "--out", str(out),
            "--size", "32x48", "--workers", "1", "--no-progress", *extra]


def contents(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def shard_files(folder):
    return sorted(p.name for p in folder.iterdir() if p.suffix in (".tar", ".json"))


def one_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    return err


def test_another_plan_is_refused_naming_the_setting_and_overwrite_leaves_only_the_new_set(videos, tmp_path, capsys):
    out = tmp_path / "out"
    assert build(args(videos, out, "--videos-per-shard", "1")) == 0
    before = contents(out)
    capsys.readouterr()
    refused = {("--videos-per-shard", "2"): "--videos-per-shard 1 there, 2 now",
               ("--videos-per-shard", "1", "--fps", "10"): "--fps 25.0 there, 10.0 now",
               ("--videos-per-shard", "1", "--size", "48x64"): "--size 32x48 there, 48x64 now",
               ("--shard-size", "1M"): "--shard-size None there, 1048576 now"}
    for extra, named in refused.items():
        assert build(args(videos, out, *extra)) == 2, extra
        err = one_line(capsys)
        assert f"{out} holds shards of another plan" in err and named in err and "--overwrite" in err, err
        assert contents(out) == before, f"a refused rebuild ({extra}) changed the folder"

    assert build(args(videos, out, "--videos-per-shard", "2", "--overwrite")) == 0
    assert "removed the old index and 4 tars and sidecars of another plan" in capsys.readouterr().out
    index = read_index(out)
    assert shard_files(out) == sorted(index.shards + [s[:-4] + ".json" for s in index.shards]) and len(index.shards) == 2
    assert verify([str(out), "--no-progress"]) == 0
    import webdataset as wds    # a reader that knows nothing of the index sees one sample a video

    samples = list(wds.WebDataset(sorted(glob.glob(str(out / "*.tar"))), shardshuffle=False))
    assert sorted(s["__key__"] for s in samples) == sorted(n for c in CLASSES.values() for n, _ in c)


def test_leftover_shards_without_an_index_are_refused_and_verify_fails_them(videos, tmp_path, capsys):
    out = tmp_path / "out"
    assert build(args(videos, out, "--videos-per-shard", "2")) == 0
    shutil.copy(out / "ucf101-000000.tar", out / "ucf101-000007.tar")
    shutil.copy(out / "ucf101-000000.json", out / "ucf101-000009.json")
    capsys.readouterr()
    assert verify([str(out), "--quick", "--no-progress"]) == 1
    report = capsys.readouterr().out
    assert "ucf101-000007.tar: a tar or sidecar the index does not name" in report
    assert "ucf101-000009.json: a tar or sidecar the index does not name" in report
    shutil.rmtree(out / INDEX_NAME)         # as an interrupted build of a larger plan leaves it
    assert build(args(videos, out, "--videos-per-shard", "2")) == 2
    assert "2 tars or sidecars this plan does not name, e.g. ucf101-000007.tar" in one_line(capsys)
    assert build(args(videos, out, "--videos-per-shard", "2", "--overwrite")) == 0
    assert shard_files(out) == ["ucf101-000000.json", "ucf101-000000.tar", "ucf101-000001.json", "ucf101-000001.tar"]
    assert verify([str(out), "--no-progress"]) == 0


@pytest.mark.parametrize("bad, named", [
    (["--fps", "nan"], "--fps: wants a finite number, got 'nan'"),
    (["--fps", "inf"], "--fps: wants a finite number, got 'inf'"),
    (["--retries", "-1"], "--retries: wants a value of 0 or more, got '-1'"),
    (["--shard-size", "0"], "--shard-size: --shard-size wants at least 1 byte"),
    (["--timeout", "inf"], "--timeout: wants a finite number, got 'inf'"),
])
def test_bad_values_fail_before_anything_is_written(videos, tmp_path, capsys, bad, named):
    out = tmp_path / "new" / "out"
    with pytest.raises(SystemExit) as exc:
        build(args(videos, out, *bad))
    assert exc.value.code == 2 and named in capsys.readouterr().err.splitlines()[-1]
    assert not (tmp_path / "new").exists()


def test_a_refused_start_leaves_no_output_folder(videos, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "out"
    _, lists = videos
    assert build(args((empty, lists), out)) == 2
    assert "none of the 4 listed videos" in one_line(capsys)
    assert not out.exists()


def test_an_output_url_that_cannot_be_written_is_one_line(videos, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    cases = {"http://127.0.0.1:9/shards": "http:// cannot be written",
             "nosuch://bucket/shards": "unknown URL scheme nosuch://"}
    if importlib.util.find_spec("gcsfs") is None:
        cases["gs://bucket/shards"] = "gs:// needs gcsfs: pip install 'cstp[gcs]'"
    for url, named in cases.items():
        assert build(args(videos, url)) == 2
        err = one_line(capsys)
        assert f"--out {url}" in err and named in err, err
    assert not list(tmp_path.iterdir()), "nothing is written locally (once a folder named 'http:')"


def test_a_build_into_memory_reads_back_as_the_local_one_and_resumes(videos, tmp_path, capsys):
    import fsspec

    local, url = tmp_path / "out", f"memory://rebuild-{uuid.uuid4().hex[:8]}/shards"
    assert build(args(videos, local, "--videos-per-shard", "2")) == 0
    try:
        assert build(args(videos, url, "--videos-per-shard", "2")) == 0
        fs = fsspec.filesystem("memory")
        for name in shard_files(local):
            assert fs.cat_file(f"{url}/{name}") == (local / name).read_bytes(), name
        assert read_index(url).attrs == read_index(local).attrs
        assert verify([url, "--no-progress"]) == 0
        # a shard counts only once its sidecar follows its tar: a tar without its sidecar, or of
        # another size than its sidecar records, is built again; the rest is kept
        fs.rm_file(f"{url}/ucf101-000000.json")
        fs.pipe_file(f"{url}/ucf101-000001.tar", fs.cat_file(f"{url}/ucf101-000001.tar")[:-1024])
        capsys.readouterr()
        assert build(args(videos, url, "--videos-per-shard", "2")) == 0
        assert "shards: 2 in the set, 2 built, 0 already complete" in capsys.readouterr().out
        assert build(args(videos, url, "--videos-per-shard", "2")) == 0
        assert "shards: 2 in the set, 0 built, 2 already complete" in capsys.readouterr().out
        for name in shard_files(local):
            assert fs.cat_file(f"{url}/{name}") == (local / name).read_bytes(), name
    finally:
        fsspec.filesystem("memory").rm(url.rsplit("/", 1)[0], recursive=True)
