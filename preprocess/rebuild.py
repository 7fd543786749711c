"""A rebuild never leaves a mixed folder: shards of another plan are refused, or removed with --overwrite.

Another plan is an index whose settings (frame rate, size, JPEG quality, videos per shard, shard
bytes, seed, name) differ from this build's, or tars and sidecars this build's plan does not name
(left by a build with more shards). Without ``--overwrite`` the build stops before writing,
naming the difference; with it the old index and those files are removed first, so an interrupted
rebuild leaves no index naming shards that are gone.
"""
from __future__ import annotations

from shards import store
from shards.errors import InputError
from shards.format import INDEX_NAME, stray_shard_files
from shards.index import read_attrs
from shards.sources import join

# index setting -> the option that sets it
OPTIONS = {"dataset": "--dataset", "name": "--name", "fps": "--fps", "height": "--size", "width": "--size",
           "jpeg_quality": "--jpeg-quality", "videos_per_shard": "--videos-per-shard",
           "shard_size": "--shard-size", "seed": "--seed"}


class OtherPlan(InputError):
    """The output folder holds shards of another plan and --overwrite was not given."""


def _old_settings(out: str) -> dict | None:
    if not store.exists(join(out, INDEX_NAME)):
        return None
    try:
        attrs = read_attrs(out)
    except InputError:
        return None        # an unreadable index is rewritten at the end of the build anyway
    return {"dataset": attrs.get("dataset"), **dict(attrs.get("settings") or {})}


def differences(old: dict, new: dict) -> list[str]:
    """'--fps 25.0 there, 10.0 now' for each option whose setting differs (one entry per option)."""
    out: dict[str, str] = {}
    for key, option in OPTIONS.items():
        if key in old and old[key] != new.get(key):
            if option == "--size":
                there, now = f"{old.get('height')}x{old.get('width')}", f"{new.get('height')}x{new.get('width')}"
            else:
                there, now = old[key], new.get(key)
            out.setdefault(option, f"{option} {there} there, {now} now")
    return list(out.values())


def check_plan(out: str, settings: dict, tars: list[str], overwrite: bool) -> int:
    """Refuse (OtherPlan) or, with ``overwrite``, clear shards of another plan in ``out``.
    Returns the number of tars and sidecars removed."""
    old = _old_settings(out)
    changed = differences(old, settings) if old else []
    strays = stray_shard_files(store.listdir(out), tars)
    if not changed and not strays:
        return 0
    if not overwrite:
        what = "; ".join(changed) if changed else (
            f"{len(strays)} tars or sidecars this plan does not name, e.g. {strays[0]}")
        raise OtherPlan(f"{out} holds shards of another plan ({what}); add --overwrite to replace them, "
                        "or build into another folder")
    # The index first: from here on no index names shards that are about to go.
    store.remove(join(out, INDEX_NAME))
    for name in strays:
        store.remove(join(out, name))
    return len(strays)
