"""Playback-rate prediction (PRP): which of data.rates both clips play at; a head per clip."""
from __future__ import annotations

from .task import PretextTask, register


class PlaybackRate(PretextTask):
    name = "rate"
    help = "weight of playback-rate prediction (summed over both clips)"
    classes_from = "data.rates"

    def targets(self, batch):
        return batch["rate"], batch["rate"]      # both clips of a pair play at its rate


register(PlaybackRate())
