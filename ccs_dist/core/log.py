"""Logging set-up shared by the CLI and jobs (compute code only calls ``logging.getLogger``)."""

from __future__ import annotations

import logging
import os
import sys


def setup_logging(level: str | int | None = None) -> None:
    """Route ccs_dist's loggers to stderr once; level from the argument or ``CCS_LOG_LEVEL``."""
    level = level or os.environ.get("CCS_LOG_LEVEL", "INFO")
    root = logging.getLogger("ccs_dist")
    if not any(getattr(h, "_ccs_dist", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
        handler._ccs_dist = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.propagate = False  # the root logger may have its own handler (open_clip calls logging.warning)
    root.setLevel(level if isinstance(level, int) else str(level).upper())
