"""Spatio-temporal overlap-rate prediction (STOR), its two halves: which of the N candidates 1/N..1
the two clips overlap by, in space (area of the crops' intersection / crop area) and in time (the
share of clip 1's sampled frames that clip 2 shares); each a head on the pair's features. The label
is the sampler's candidate index (shards.sampling.PairSample)."""
from __future__ import annotations

from .task import PretextTask, register


class Overlap(PretextTask):
    per_clip = False

    def __init__(self, axis: str, field: str):
        self.name = f"overlap_{axis}"
        self.help = f"weight of {axis} overlap-rate prediction"
        self.classes_from = f"data.n_{axis}_overlaps"
        self.field = field                 # the batch's candidate index, also the term's name in old logs
        self.old_names = (field,)

    def targets(self, batch):
        return batch[self.field]


# eq. 5's order: spatial, then temporal
register(Overlap("spatial", "overlap_s"))
register(Overlap("temporal", "overlap_t"))
