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
import os
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


def plural(n: int, word: str, many: str | None = None) -> str:
    """'1 step', '3 steps' (``many``: an irregular plural, e.g. 'queries')."""
    return f"{n} {word if n == 1 else (many or word + 's')}"


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


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Every option's help shows its default once; descriptions keep their line breaks. No default is
    shown for a required option, a flag, an option without one (None, empty), or a help text that
    already names its default."""

    def _get_help_string(self, action):
        text = action.help or ""
        d = action.default
        if (action.required or d is None or d is False or d == [] or d == () or "default" in text.lower()
                or d is argparse.SUPPRESS):
            return text
        return super()._get_help_string(action)


def program_name(prog: str) -> str:
    """The name a usage line shows: the console script the user typed (``cstp-pretrain``,
    ``dask-submit``) when run through one, else ``prog`` (the script's own name)."""
    ran = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    return ran if ran.startswith(("cstp-", "dask-submit")) else prog


def parser(prog: str, description: str | None = None, **kw) -> argparse.ArgumentParser:
    """An ArgumentParser whose --help shows every default (the commands' common style) and whose usage
    names the command as it was run (:func:`program_name`)."""
    return argparse.ArgumentParser(prog=program_name(prog), description=description, formatter_class=HelpFormatter,
                                   **kw)
