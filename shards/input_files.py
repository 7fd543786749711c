"""Read a file the user named on the command line, under the error contract: a missing file, or
one that does not parse, is one InputError line naming the option and the path."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from .errors import InputError, one_line


def read_input_file(path, option: str, parse: Callable[[str], object], kind: str, errors: tuple = (ValueError,),
                    hint: str = "") -> object:
    """``parse`` of the text of a file the user named with ``option``; a missing file, or one whose
    parse raises one of ``errors``, is an InputError naming both (``hint``: where such files come from)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{option} {path}: no such file{'; ' + hint if hint else ''}")
    try:
        return parse(path.read_text())
    except (*errors, UnicodeDecodeError) as exc:
        raise InputError(f"{option} {path}: not valid {kind} ({one_line(exc)})") from None
