"""shards.decoders / shards.decode_torch: the decoder registry, and the gpu stage's code run on the CPU."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from shards.decode import SimpleJpegDecoder
from shards.decoders import DECODERS, make_decoder
from shards.decode_torch import DeviceStage, TorchvisionDecoder
from shards.errors import InputError
from shards.stream import ClipPairStream, PairLoader, StreamConfig
from tests.conftest import ROOT

NO_CUDA = not torch.cuda.is_available()


def test_registry():
    assert isinstance(make_decoder("cpu"), SimpleJpegDecoder) and set(DECODERS) == {"cpu", "gpu"}
    with pytest.raises(InputError, match=r"data.decode='jpeg2000': unknown decoder; choose one of \['cpu', 'gpu'\]"):
        make_decoder("jpeg2000")


def test_the_gpu_stage_on_the_cpu_gives_the_cpu_paths_batches(real_ucf_shards):
    """Workers send JPEG bytes and geometry; the stage decodes them with torchvision (here its CPU
    decoder) and crops and resizes in float. Labels, frame numbers and videos are equal; pixels
    within 2 levels (two builds of libjpeg-turbo, and float vs uint8 rounding in the resize)."""
    cfg = dict(batch_size=4, out_size=(112, 112))
    cpu = list(ClipPairStream(StreamConfig(str(real_ucf_shards), **cfg)))
    enc = ClipPairStream(StreamConfig(str(real_ucf_shards), decode="gpu", **cfg))
    stage = DeviceStage(TorchvisionDecoder("cpu"), (112, 112), enc.height, enc.width)
    gpu = [stage(b) for b in enc]
    assert len(gpu) == len(cpu) == 2
    for a, b in zip(cpu, gpu):
        assert a["video_id"] == b["video_id"]
        for k in ("rate", "rot1", "rot2", "overlap_s", "overlap_t", "label", "idx1", "idx2"):
            assert torch.equal(a[k], b[k]), k
        for k in ("clip1", "clip2"):
            assert b[k].shape == a[k].shape and b[k].dtype == torch.uint8
            d = (a[k].int() - b[k].int()).abs()
            assert d.max() <= 2 and d.float().mean() < 0.5, (k, int(d.max()), float(d.float().mean()))


def test_gpu_clips_rotate_like_the_cpu_decoder(real_ucf_shards):
    from shards.index import read_index
    from shards.random_access import FrameReader

    idx = read_index(real_ucf_shards)
    row = int(idx.select()[0])
    cpu, tv = FrameReader(str(real_ucf_shards), idx), FrameReader(str(real_ucf_shards), idx, decoder=TorchvisionDecoder("cpu"))
    a, b = cpu.read_frames(row, range(8)), tv.read_frames(row, range(8))
    assert b.shape == (8, 3, 128, 171)
    for deg in (0, 90, 270):
        ca = cpu.decoder.clip(a, [1, 3, 5], (10, 4, 100, 90), deg, (64, 64))
        cb = tv.decoder.clip(b, [1, 3, 5], (10, 4, 100, 90), deg, (64, 64))
        assert (ca.int() - cb.int()).abs().max() <= 2


@pytest.mark.skipif(not NO_CUDA, reason="this machine has CUDA")
def test_gpu_decoding_without_cuda_is_refused(real_ucf_shards, tmp_path):
    with pytest.raises(InputError, match="data.decode=gpu decodes with CUDA"):
        PairLoader(StreamConfig(str(real_ucf_shards), decode="gpu"))
    out = tmp_path / "run"
    p = subprocess.run([sys.executable, str(ROOT / "train/pretrain.py"), "--config", str(ROOT / "configs/tiny_cpu.yaml"),
                        f"data.shards={real_ucf_shards}", "data.decode=gpu", "--out", str(out)],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2, p.stderr
    assert p.stderr.strip().splitlines() == ["pretrain: data.decode=gpu decodes with CUDA, and torch.cuda.is_available() "
                                             "is False on this machine; use data.decode=cpu"]
    assert not out.exists()


def test_the_gpu_stage_through_a_worker(real_ucf_shards):
    """PairLoader with data.decode=gpu (its decoder on the CPU here): the worker sends JPEG bytes and
    geometry through the DataLoader, the main process decodes; batches match the cpu loader's."""
    cfg = dict(batch_size=4, out_size=(64, 64), seed=3)
    cpu = list(PairLoader(StreamConfig(str(real_ucf_shards), **cfg), num_workers=1, pin_memory=False))
    gpu = list(PairLoader(StreamConfig(str(real_ucf_shards), decode="gpu", **cfg), num_workers=1, pin_memory=False,
                          device="cpu"))
    assert [b["video_id"] for b in gpu] == [b["video_id"] for b in cpu] and len(cpu) == 2
    for a, b in zip(cpu, gpu):
        assert torch.equal(a["overlap_t"], b["overlap_t"]) and torch.equal(a["idx2"], b["idx2"])
        assert (a["clip1"].int() - b["clip1"].int()).abs().max() <= 2
