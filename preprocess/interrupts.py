"""How a build meets Ctrl-C and SIGTERM: the driver alone is interrupted, and stops cleanly."""
from __future__ import annotations

import contextlib
import signal
import threading


@contextlib.contextmanager
def sigint_ignored_by_children():
    """Worker processes started in this block ignore SIGINT (Python keeps an inherited SIG_IGN), so
    a terminal's Ctrl-C reaches the driver alone, which then cancels the tasks and closes the
    cluster, instead of every worker dying with its own traceback. (A Ctrl-C in the second or two
    the block lasts is lost: children only inherit SIG_IGN, not a handler that would remember it.)"""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


@contextlib.contextmanager
def sigterm_as_interrupt():
    """SIGTERM (a scheduler's kill, ``timeout``) ends the build the way Ctrl-C does."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)
