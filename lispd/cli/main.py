"""The ``lispd`` command: the daemon (``lispd -c FILE``) and its tools (``lispd decode``)."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from lispd import __version__
from lispd.cli import decode
from lispd.logfmt import LogfmtFormatter

DEFAULT_CONFIG = "/etc/lispd/lispd.conf"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``lispd`` and its sub-commands."""
    parser = argparse.ArgumentParser(
        prog="lispd",
        description="A userspace LISP router daemon for Linux. Without a sub-command, runs the "
        "daemon in the foreground with the configuration file.",
    )
    parser.add_argument("--version", action="version", version=f"lispd {__version__}")
    parser.add_argument(
        "-c", "--config", default=DEFAULT_CONFIG, help=f"configuration file ({DEFAULT_CONFIG})"
    )
    parser.add_argument(
        "--check", action="store_true", help="validate the configuration file and exit (0 = ok)"
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="log at debug level, whatever daemon.log-level says (a reload keeps it)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    decode.add_arguments(
        sub.add_parser(
            "decode",
            help="decode LISP packets (hex or pcap) into JSON lines",
            description="Print every LISP message found in the input as one JSON object a line.",
        )
    )
    return parser


class _OwnDebugOnly(logging.Filter):
    """Debug and info records of lispd's own loggers; only warnings and worse from libraries
    (pyroute2 logs every netlink message at debug level)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.name.startswith("lispd") or record.levelno >= logging.WARNING


def log_formatter(journal: bool) -> logging.Formatter:
    """logfmt lines on stderr (:mod:`lispd.logfmt`): ``time=... level=... logger=... msg=...
    key=value...``; under journald without the time and with a ``<N>`` priority prefix."""
    return LogfmtFormatter(journal=journal)


def _setup_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(log_formatter(bool(os.environ.get("JOURNAL_STREAM"))))
    handler.addFilter(_OwnDebugOnly())
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper(), logging.INFO))


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``lispd`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "decode":
        return decode.run(args)

    from lispd.config import ConfigError, load_config

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"lispd: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"lispd: {args.config}: {exc.strerror}", file=sys.stderr)
        return 1
    if args.check:
        from lispd.startup import host_warnings

        # What this host would refuse: warnings only, the file may be meant for another host.
        for warning in host_warnings(config):
            print(f"lispd: warning: {warning}", file=sys.stderr)
        print(f"lispd: {args.config}: configuration ok")
        return 0
    _setup_logging("debug" if args.verbose else config.daemon.log_level)
    from lispd.daemon import run_daemon

    return run_daemon(config, fixed_log_level=args.verbose)


if __name__ == "__main__":
    sys.exit(main())
