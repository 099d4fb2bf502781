"""``lispd-lab``: the seed world in network namespaces (root only).

    lispd-lab demo    build it, exercise every role, tell the story, tear it down
    lispd-lab up      build it, start lispd, print how to explore it, leave it running
    lispd-lab down    stop what ``up`` left running (nothing up: says so, exit 0)

``--state-dir`` (default ``/run/lispd-lab``) is where ``up`` keeps its state file, the lispd
configs, logs and control sockets; ``down`` needs the same one.  ``_keep`` is internal: the
detached process that holds the world ``up`` built (see :mod:`lispd.lab.session`).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from lispd.lab import demo, session

__all__ = ["main", "parser"]


def parser() -> argparse.ArgumentParser:
    """The argument parser of ``lispd-lab``."""
    p = argparse.ArgumentParser(
        prog="lispd-lab",
        description="The seed world (LISP sites behind NATs, an RTR, MS/MR, PITR/PETR, a "
        "non-LISP host) in network namespaces.",
    )
    p.add_argument(
        "--state-dir",
        type=Path,
        default=session.DEFAULT_STATE_DIR,
        help="where up keeps its state, configs, logs and sockets (default: %(default)s)",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="{demo,up,down}")
    sub.add_parser("demo", help="build the world, exercise it, tell the story, tear it down")
    sub.add_parser("up", help="build the world and leave it running; prints how to explore")
    sub.add_parser("down", help="stop the world up left running")
    keep = sub.add_parser("_keep")  # internal: the detached keeper of up's world
    keep.add_argument("--ready-fd", type=int, required=True)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``lispd-lab`` and ``python -m lispd.lab``; returns the exit status."""
    args = parser().parse_args(argv)
    if os.geteuid() != 0:
        print(f"lispd-lab {args.command}: needs root (network namespaces)", file=sys.stderr)
        return 2
    if args.command == "demo":
        return demo.run_demo()
    if args.command == "up":
        return session.up(args.state_dir)
    if args.command == "down":
        return session.down(args.state_dir)
    return session.keep(args.state_dir, args.ready_fd)


if __name__ == "__main__":
    sys.exit(main())
