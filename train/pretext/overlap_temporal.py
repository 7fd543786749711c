"""Temporal overlap-rate prediction (STOR's temporal half): which of the N candidates 1/N..1 of its
sampled frames clip 2 shares with clip 1; a head on the pair's features."""
from __future__ import annotations

from .task import PretextTask, register


class TemporalOverlap(PretextTask):
    name = "overlap_temporal"
    help = "weight of temporal overlap-rate prediction"
    per_clip = False
    classes_from = "data.n_temporal_overlaps"
    old_names = ("overlap_t",)

    def n_classes(self, cfg) -> int:
        return cfg.data.n_temporal_overlaps

    def targets(self, batch):
        return batch["overlap_t"]      # the sampler's candidate index (shards.sampling.PairSample)


register(TemporalOverlap())
