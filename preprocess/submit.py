"""``dask-submit [--scheduler ADDR] SCRIPT [ARGS...]``: run a driver script against a Dask cluster.

distributed dropped its own dask-submit in 2019. This one checks that the scheduler answers, exports
its address as ``DASK_SCHEDULER_ADDRESS`` (which our drivers and ``distributed.Client()`` read), and
runs SCRIPT in this process as ``__main__`` with ARGS, passing its exit status through. Without a
scheduler the script starts its own LocalCluster.
"""
from __future__ import annotations

import argparse
import os
import runpy
import sys

from shards.errors import InputError, command, parser


def check_scheduler(address: str, timeout: float) -> str | None:
    """None if the scheduler at ``address`` answers, else the reason it does not."""
    from distributed import Client

    try:
        client = Client(address, timeout=f"{timeout}s")
    except (OSError, TimeoutError) as exc:
        return f"{type(exc).__name__}: {exc}"
    client.close()
    return None


@command("dask-submit")
def main(argv: list[str] | None = None) -> int:
    p = parser("dask-submit", __doc__.split("\n\n")[0])
    p.add_argument("--scheduler", default=os.environ.get("DASK_SCHEDULER_ADDRESS"),
                   help="scheduler address, e.g. tcp://127.0.0.1:8786; the default is $DASK_SCHEDULER_ADDRESS, "
                        "and with neither the script starts its own LocalCluster")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the scheduler")
    p.add_argument("script", help="driver script to run, e.g. preprocess/build_shards.py")
    p.add_argument("args", nargs=argparse.REMAINDER, help="arguments for the script")
    args = p.parse_args(argv)

    if not os.path.isfile(args.script):
        raise InputError(f"no such script: {args.script}")
    if args.scheduler:
        reason = check_scheduler(args.scheduler, args.timeout)
        if reason:
            raise InputError(f"cannot reach the Dask scheduler at {args.scheduler}: {reason}")
        os.environ["DASK_SCHEDULER_ADDRESS"] = args.scheduler
    else:
        print("dask-submit: no --scheduler or DASK_SCHEDULER_ADDRESS; the script starts a LocalCluster",
              file=sys.stderr)

    # As `python SCRIPT` would: the script's folder first on sys.path, argv[0] the script.
    sys.argv = [args.script, *args.args]
    sys.path.insert(0, os.path.dirname(os.path.abspath(args.script)))
    try:
        runpy.run_path(args.script, run_name="__main__")
    except SystemExit as exc:
        code = exc.code
        if code is None:
            return 0
        if isinstance(code, int):
            return code
        print(code, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
