"""CSTP's pretext tasks, one module a task (STOR's two halves share ``overlap``), and their registry ``TASKS``.

Every module of this package registers its task(s) on import; they are imported in name order,
which is eq. 5's: spatial overlap, temporal overlap (overlap), playback rate, rotation. A new task is
one new module here (or a ``register`` call anywhere before the config is loaded).
"""
import importlib
import pkgutil

from .task import TASKS, PretextTask, enabled, register, unregister

for _m in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    importlib.import_module(f"{__name__}.{_m}")

__all__ = ["TASKS", "PretextTask", "enabled", "register", "unregister"]
