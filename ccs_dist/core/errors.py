"""Errors a user can cause, reported at the edge in one line with a non-zero exit."""

from __future__ import annotations
import sys
from pathlib import Path


class UserError(Exception):
    """A problem with the user's input: the message says what is wrong and what to do.

    Raised by compute code; caught by the CLI and job entry points, which print
    ``error: <message>`` on one line and exit with :attr:`exit_code`.
    """

    exit_code = 2

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))  # always one line


def check_at_least(minimum: int, **values: int | None) -> None:
    """A :class:`UserError` naming the first value (None = not set, allowed) below ``minimum``."""
    for name, value in values.items():
        if value is not None and value < minimum:
            raise UserError(f"{name} must be >= {minimum}, got {value}")


def run_at_edge(fn, interrupted: str) -> int:
    """Run an entry point: a UserError becomes ``error: <message>`` on stderr and its exit code."""

    try:
        fn()
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print(f"error: interrupted; {interrupted}", file=sys.stderr)
        return 130
    return 0


def check_int(name: str, value, minimum: int | None = None) -> int:
    """``value`` as an int (None allowed only by the caller), or a :class:`UserError` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise UserError(f"{name} must be an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise UserError(f"{name} must be >= {minimum}, got {value}")
    return value


def check_dir_arg(name: str, path) -> None:
    """A :class:`UserError` when ``path`` (a directory to create or reuse) or one of its parents is a file."""

    p = Path(path).expanduser()
    for q in (p, *p.parents):
        if q.exists():
            if not q.is_dir():
                what = "is a file" if q == p else f"is inside {q}, which is a file"
                raise UserError(f"{name} {p} {what}: pass a directory (it is created when missing)")
            return
