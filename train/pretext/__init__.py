"""CSTP's pretext tasks, one module each, and their registry (``TASKS``, in eq. 5's order)."""
from .task import TASKS, PretextTask, enabled, register, unregister
from . import rate, rotation, overlap_spatial, overlap_temporal  # noqa: F401,E402  (each registers itself)

__all__ = ["TASKS", "PretextTask", "enabled", "register", "unregister"]
