"""Option values shared by the commands: defaults, parsing and checks of the flags several commands take.

Every command turns its flags into keyword-only stage configs here or in its own module, then calls a
stage of :mod:`ccs_dist.stages`; nothing below the CLI sees a flag.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from ccs_dist.core.errors import UserError
from ccs_dist.artifacts.storage import check_root
from ccs_dist.core.weights import has_no_weights
from ccs_dist.stages.model import ModelSpec

DEFAULT_MODEL = "ViT-B-32"


def terminal() -> bool:
    """Progress bars only when stderr is a terminal: redirected logs get log lines, not carriage returns."""
    return sys.stderr.isatty()


def as_list(value, sep: str = ",") -> list[str]:
    """A CLI value (``"a,b"``, a tuple from fire, a list, a scalar, None) -> list of non-empty strings."""
    if value is None or value == "":
        return []
    if isinstance(value, (list, tuple)):
        out = []
        for v in value:
            out += as_list(v, sep)
        return out
    return [p.strip() for p in str(value).split(sep) if p.strip()]


def seeds_arg(seeds) -> tuple[int, ...]:
    try:
        return tuple(int(s) for s in as_list(seeds))
    except ValueError:
        raise UserError(f"seeds must be integers, got {seeds!r}") from None


def table_in(value: str, name: str) -> str:
    """A table argument: a parquet file, or a run directory holding ``tables/NAME.parquet``."""
    path = Path(str(value))
    if not path.is_dir():
        return str(value)
    for candidate in (path / "tables" / f"{name}.parquet", path / f"{name}.parquet"):
        if candidate.is_file():
            return str(candidate)
    return str(path / "tables" / f"{name}.parquet")  # missing: the error names the file a run would hold


def optional_table(value: str | None, name: str) -> str | None:
    return table_in(value, name) if value else None


def data_root_arg(data_root: str | None, tasks: list[str]) -> str:
    """``--data-root``, required unless every task names its own folder (``NAME@PATH``)."""
    if data_root:
        return str(data_root)
    if tasks and all("@" in t for t in tasks):
        return "."  # never read: each task names its folder
    raise UserError("give --data-root FOLDER, the folder that holds the datasets (or name each task's folder as NAME@PATH)")


def pretrained_arg(pretrained) -> str | None:
    return None if has_no_weights(pretrained) else str(pretrained)


def device_arg(device) -> str | None:
    return None if device in (None, "auto") else device


def optional_int(value, name: str) -> int | None:
    """``0``, empty and none mean "not given" (fire passes what was typed)."""
    if value in (None, "", 0, "0", "none", "None"):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise UserError(f"{name} must be an integer, got {value!r}") from None


def int_arg(value, name: str) -> int:
    if isinstance(value, bool):
        raise UserError(f"{name} must be an integer, got {value!r}")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise UserError(f"{name} must be an integer, got {value!r}") from None


@dataclass(frozen=True)
class ProbeRun:
    """The model flags of the commands that decompose probe images, checked (the probe section is a config)."""

    model: object  # ccs_dist.stages.model.ModelSpec
    layers: int | tuple[int, ...]
    cache_dir: str


def probe_run(*, model, pretrained, layers, device, precision, cache_dir) -> ProbeRun:
    if isinstance(layers, (list, tuple)):
        layers = tuple(int(x) for x in layers)
    elif isinstance(layers, str) or isinstance(layers, bool) or not isinstance(layers, int):
        raise UserError(f"layers={layers!r}: give an int (last n layers) or a list like [8,9,10,11]")
    check_root("--cache-dir", str(cache_dir))  # a directory or a remote root (ccs_dist.artifacts.storage)
    return ProbeRun(
        model=ModelSpec(str(model), pretrained_arg(pretrained), device=device, precision=precision),
        layers=layers,
        cache_dir=str(cache_dir),
    )
