"""Rotation prediction: which of data.rotations each clip was turned by (the device turns it, after
the flip: train.augment); a head per clip."""
from __future__ import annotations

from .task import PretextTask, register


class Rotation(PretextTask):
    name = "rotation"
    help = "weight of rotation prediction (summed over both clips)"
    classes_from = "data.rotations"

    def targets(self, batch):
        return batch["rot1"], batch["rot2"]


register(Rotation())
