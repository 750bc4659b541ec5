"""Writing and reading the parquet tables of DESIGN.md, with run metadata in the parquet footer."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq

from ccs_dist.store import atomic_write_bytes

METADATA_KEY = b"ccs_dist"


def write_table(df: pl.DataFrame, path: str | Path, metadata: dict[str, Any] | None = None) -> Path:
    """Write ``df`` as parquet atomically; ``metadata`` goes into the file's key-value footer as JSON."""
    table = df.to_arrow()
    if metadata is not None:
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), METADATA_KEY: json.dumps(metadata, default=str).encode()})
    buf = io.BytesIO()
    pq.write_table(table, buf)
    path = Path(path)
    atomic_write_bytes(path, buf.getvalue())
    return path


def read_metadata(path: str | Path) -> dict[str, Any]:
    meta = pq.read_schema(path).metadata or {}
    return json.loads(meta[METADATA_KEY]) if METADATA_KEY in meta else {}


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(df: pl.DataFrame) -> pl.DataFrame:
    """Text cells a spreadsheet would run as a formula (starting ``= + - @``, tab or CR) get a leading
    ``'`` (as do such cells already starting with ``'``, so the round trip is exact), so that a CSV opened
    in a spreadsheet shows them as text; :func:`csv_unescape` undoes it."""
    text_cols = [c for c, t in df.schema.items() if t == pl.String]
    return df.with_columns(
        pl.when(pl.col(c).str.contains(r"^'*[=+\-@\t\r]")).then(pl.lit("'") + pl.col(c)).otherwise(pl.col(c)).alias(c)
        for c in text_cols
    )


def csv_unescape(df: pl.DataFrame) -> pl.DataFrame:
    """Text read back from a CSV written with :func:`csv_safe`: the added ``'`` removed."""
    text_cols = [c for c, t in df.schema.items() if t == pl.String]
    return df.with_columns(
        pl.when(pl.col(c).str.contains(r"^'+[=+\-@\t\r]")).then(pl.col(c).str.slice(1)).otherwise(pl.col(c)).alias(c)
        for c in text_cols
    )
