"""The command line's building blocks (argparse, no engine work): a parser whose errors are one
sentence, the value types of the options (each says what it accepts), and the `UserError`s for usage
(exit code 2) and runtime (exit code 1) problems. `main.py` builds the commands from these.
"""

from __future__ import annotations

import argparse

from sensors.errors import UserError


class Parser(argparse.ArgumentParser):
    """argparse with one-sentence errors (exit 2) instead of a usage dump."""

    def error(self, message: str) -> None:  # noqa: D102
        self.exit(2, f"error: {message} (see '{self.prog} --help').\n")


def usage_error(message: str) -> UserError:
    """A usage problem: printed as one sentence, exit code 2."""
    return UserError(message, 2)


def runtime_error(message: str) -> UserError:
    """A problem while running: printed as one sentence, exit code 1."""
    return UserError(message, 1)


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def float_where(accept, requirement: str):
    """An argparse type: a float for which `accept(value)` holds, else '<value> must be <requirement>'."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
        if not accept(value):
            raise argparse.ArgumentTypeError(f"{value} must be {requirement}")
        return value

    return parse


fraction = float_where(lambda v: 0.0 <= v < 1.0, "in [0, 1)")
unit = float_where(lambda v: 0.0 <= v <= 1.0, "in [0, 1]")
positive_float = float_where(lambda v: v > 0.0, "positive")
non_negative = float_where(lambda v: v >= 0.0, "0 or more")


def save_kinds(text: str) -> tuple[str, ...]:
    from engines.batch import SAVE_KINDS

    kinds = tuple(k.strip() for k in text.split(",") if k.strip())
    unknown = [k for k in kinds if k not in SAVE_KINDS]
    if unknown or not kinds:
        raise argparse.ArgumentTypeError(
            f"unknown output '{','.join(unknown) or text}': choose from {','.join(SAVE_KINDS)}"
        )
    return kinds
