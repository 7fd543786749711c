from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.synthetic import make_audio_only, make_video, write_ucf_layout

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("CSTP_SHARED_DATA", ROOT.parent / "shared" / "data"))
VIDEOS = SHARED / "videos"
ANNOTATIONS = SHARED / "annotations"


HAVE_DATA = VIDEOS.is_dir() and ANNOTATIONS.is_dir()
# fixtures that read the real clips; a test using one (directly or through another) needs the data
DATA_FIXTURES = {"shared_data", "real_ucf_shards"}


def needs_data(item) -> bool:
    if DATA_FIXTURES & set(getattr(item, "fixturenames", ())):
        return True
    source = Path(str(item.fspath)).read_text()
    return "VIDEOS" in source or "ANNOTATIONS" in source


def pytest_collection_modifyitems(config, items):
    """Without ../shared/data the tests that read it are skipped with the reason; the rest run."""
    if HAVE_DATA:
        return
    skip = pytest.mark.skip(reason=f"the real test data is not at {SHARED} (set CSTP_SHARED_DATA)")
    for item in items:
        if needs_data(item):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    return SHARED


# Three classes of synthetic videos (frames encode their index) and, listed in the split files like
# any other video, the bad inputs a real download holds.
SYNTH_CLASSES = {
    "Alpha": [("v_Alpha_g01_c01", 40), ("v_Alpha_g02_c01", 55), ("v_Alpha_g03_c01", 33), ("v_Alpha_g04_c01", 48)],
    "Beta": [("v_Beta_g01_c01", 45), ("v_Beta_g02_c01", 60), ("v_Beta_g03_c01", 38), ("v_Beta_g04_c01", 52)],
    "Gamma": [("v_Gamma_g01_c01", 50), ("v_Gamma_g02_c01", 36), ("v_Gamma_g03_c01", 44),
              ("v_Gamma_zero_bytes", 0), ("v_Gamma_text_file", 0), ("v_Gamma_truncated", 0),
              ("v_Gamma_audio_only", 0), ("v_Gamma_not_on_disk", 0)],
}
COLOURS = {"Alpha": (200, 40, 40), "Beta": (40, 200, 40), "Gamma": (40, 40, 200)}
BAD = {"v_Gamma_zero_bytes": "empty file", "v_Gamma_text_file": "not a readable media file",
       "v_Gamma_truncated": "truncated or corrupt", "v_Gamma_audio_only": "no video stream"}


@pytest.fixture(scope="session")
def synthetic_ucf(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("synthetic_ucf")
    videos, lists = write_ucf_layout(root, SYNTH_CLASSES)
    for cls, items in SYNTH_CLASSES.items():
        for name, n in items:
            if n:
                make_video(videos / cls / f"{name}.avi", n, fps=25, colour=COLOURS[cls])
    g = videos / "Gamma"
    (g / "v_Gamma_zero_bytes.avi").write_bytes(b"")
    (g / "v_Gamma_text_file.avi").write_text("this is not a video\n")
    full = make_video(root / "long.avi", 200, fps=25)
    (g / "v_Gamma_truncated.avi").write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    make_audio_only(g / "v_Gamma_audio_only.mp4")
    return videos, lists


@pytest.fixture
def fresh_dir(tmp_path) -> Path:
    d = tmp_path / "out"
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def real_ucf_shards(tmp_path_factory) -> Path:
    """Shards of the eleven real UCF-101 clips, one video per shard."""
    import contextlib
    import io

    from preprocess.build_shards import main as build

    out = tmp_path_factory.mktemp("real_ucf") / "shards"
    with contextlib.redirect_stdout(io.StringIO()):
        rc = build(["--size", "128x171", "--dataset", "ucf101", "--videos", str(VIDEOS / "ucf101/UCF-101"), "--annotations",
                    str(ANNOTATIONS / "ucf101"), "--out", str(out), "--videos-per-shard", "1", "--workers", "2",
                    "--no-progress"])
    assert rc == 0
    return out
