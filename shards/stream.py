"""Streaming clip-pair loading for multi-node pretraining; the parts live in modules named for them:

- ``shards.epoch_plan``: which videos each rank and worker delivers in an epoch (pure, seeded);
- ``shards.readers``: the needed frames' JPEG bytes, from local shards by offset or streamed shards;
- ``shards.pairs``: clip pairs drawn per video, decoded and assembled into batches;
- ``shards.loader``: the IterableDataset; ``shards.pair_loader``: the resumable, persistent-worker PairLoader;
- ``shards.decode``: the decoders (cpu in the workers; gpu: ``shards.decode_torch``, in the training process),
  by name from ``shards.decoders``.

The tars are plain WebDataset shards, which ``webdataset.WebDataset`` reads as well; our readers
are ours because they read only the frames a pair needs.
"""
from .loader import ClipPairStream, StreamConfig, dist_env
from .pair_loader import PairLoader
from .readers import ShardDataError

__all__ = ["ClipPairStream", "PairLoader", "ShardDataError", "StreamConfig", "dist_env"]
