"""The error contract every command shares.

An *expected* failure (bad input, bad config, a missing or unreadable file, a run that cannot go on)
raises a subclass of :class:`CstpError`; :func:`run_main` turns it into one line, ``prog: message``,
on stderr and an exit status: 2 for usage and input mistakes, 1 for a run that failed. Anything else
is a bug and keeps its traceback.

Every stage imports ``shards`` (the format is the contract between them), so the contract for
errors lives here too.
"""
from __future__ import annotations

import argparse
import functools
import sys
from typing import Callable, Sequence

EXIT_RUN_FAILED = 1
EXIT_USAGE = 2


class CstpError(Exception):
    """Base of every expected failure; ``exit_code`` says which kind it is."""

    exit_code = EXIT_USAGE


class InputError(CstpError):
    """Bad input the user can fix: a wrong option or config value, a missing or malformed file."""

    exit_code = EXIT_USAGE


class RunFailed(CstpError):
    """A run that started correctly but cannot finish (non-finite loss, too many bad samples...)."""

    exit_code = EXIT_RUN_FAILED


def one_line(text: object) -> str:
    """The first non-empty line of ``text`` (messages must stay on one line)."""
    for line in str(text).splitlines():
        if line.strip():
            return line.strip()
    return type(text).__name__ if isinstance(text, BaseException) else ""


def run_main(prog: str, fn: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None) -> int:
    """Run ``fn(argv)``; an expected failure becomes ``prog: message`` and its exit status."""
    try:
        return int(fn(argv) or 0)
    except CstpError as exc:
        print(f"{prog}: {one_line(exc)}", file=sys.stderr, flush=True)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr, flush=True)
        return 130


def command(prog: str):
    """Decorator for a command's ``main(argv)``: the wrapped function follows :func:`run_main`'s
    contract and returns the exit status (console scripts call ``sys.exit(main())``)."""

    def deco(fn):
        @functools.wraps(fn)
        def wrapper(argv: Sequence[str] | None = None) -> int:
            return run_main(prog, fn, argv)

        wrapper.unwrapped = fn
        return wrapper

    return deco


def read_input_file(path, option: str, parse: Callable[[str], object], kind: str, errors: tuple = (ValueError,),
                    hint: str = "") -> object:
    """``parse`` of the text of a file the user named with ``option``; a missing file, or one whose
    parse raises one of ``errors``, is an InputError naming both (``hint``: where such files come from)."""
    from pathlib import Path

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{option} {path}: no such file{'; ' + hint if hint else ''}")
    try:
        return parse(path.read_text())
    except (*errors, UnicodeDecodeError) as exc:
        raise InputError(f"{option} {path}: not valid {kind} ({one_line(exc)})") from None


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Every option's help shows its default; descriptions keep their line breaks."""


def parser(prog: str, description: str | None = None, **kw) -> argparse.ArgumentParser:
    """An ArgumentParser whose --help shows every default (the commands' common style)."""
    return argparse.ArgumentParser(prog=prog, description=description, formatter_class=HelpFormatter, **kw)
