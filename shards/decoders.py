"""The decoders by name (``data.decode``): ``cpu`` (simplejpeg, shards.decode) and ``gpu``
(torchvision's nvJPEG decoder, shards.decode_torch). The registry stands apart from both so that
neither decoder module imports the other's: another decoder is one more class and one entry here."""
from __future__ import annotations

from .decode import Decoder, SimpleJpegDecoder
from .decode_torch import TorchvisionDecoder
from .errors import InputError

DECODERS = {"cpu": lambda device=None: SimpleJpegDecoder(), "gpu": TorchvisionDecoder}


def make_decoder(name: str | Decoder = "cpu", device=None) -> Decoder:
    """The decoder ``name`` (a key of DECODERS), or ``name`` itself when it is one already."""
    if not isinstance(name, str):
        return name
    if name not in DECODERS:
        raise InputError(f"data.decode={name!r}: unknown decoder; choose one of {sorted(DECODERS)}")
    return DECODERS[name](device)
