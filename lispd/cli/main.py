"""The ``lispd`` command."""

from __future__ import annotations

import argparse
import sys

from lispd import __version__
from lispd.cli import decode


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``lispd`` and its sub-commands."""
    parser = argparse.ArgumentParser(
        prog="lispd", description="A userspace LISP router daemon for Linux."
    )
    parser.add_argument("--version", action="version", version=f"lispd {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    decode.add_arguments(
        sub.add_parser(
            "decode",
            help="decode LISP packets (hex or pcap) into JSON lines",
            description="Print every LISP message found in the input as one JSON object a line.",
        )
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``lispd`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "decode":
        return decode.run(args)
    parser.print_help(sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
