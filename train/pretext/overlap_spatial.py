"""Spatial overlap-rate prediction (STOR's spatial half): which of the N candidates 1/N..1 the two
crops overlap by (area of the intersection / crop area); a head on the pair's features."""
from __future__ import annotations

from .task import PretextTask, register


class SpatialOverlap(PretextTask):
    name = "overlap_spatial"
    help = "weight of spatial overlap-rate prediction"
    per_clip = False
    classes_from = "data.n_spatial_overlaps"
    old_names = ("overlap_s",)

    def n_classes(self, cfg) -> int:
        return cfg.data.n_spatial_overlaps

    def targets(self, batch):
        return batch["overlap_s"]      # the sampler's candidate index (shards.sampling.PairSample)


register(SpatialOverlap())
