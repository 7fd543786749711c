"""Dataset adapters: each turns a dataset's own annotation files and video folder into a Listing.

Adapters register by name; ``load_listing(name, videos, annotations)`` is the one entry point.
"""
from __future__ import annotations

from .base import DATASETS, Listing, VideoEntry, load_listing, register  # noqa: F401
from . import hmdb51, kinetics400, ucf101  # noqa: F401,E402  (registration)
