"""What the command-line tools share when reading their arguments."""

from __future__ import annotations

import argparse
import math
import sys
from typing import NoReturn


def seconds(text: str) -> float:
    """An argparse type: a number of seconds, more than 0 and at most an hour."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value) or not 0 < value <= 3600:
        raise argparse.ArgumentTypeError("must be more than 0 and at most 3600 seconds")
    return value


class Parser(argparse.ArgumentParser):
    """argparse whose usage errors exit with ``usage_exit`` (each tool gives its exit codes
    their own meanings)."""

    usage_exit = 2

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(self.usage_exit, f"{self.prog}: error: {message}\n")
