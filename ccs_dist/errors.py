"""Errors a user can cause, reported at the edge in one line with a non-zero exit."""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input: the message says what is wrong and what to do.

    Raised by compute code; caught by the CLI and job entry points, which print
    ``error: <message>`` on one line and exit with :attr:`exit_code`.
    """

    exit_code = 2

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))  # always one line
