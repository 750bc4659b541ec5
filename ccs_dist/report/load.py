"""Reading a run directory for the report: manifest, tables (validated), paper reference figures.

A run directory holds ``manifest.json`` and ``tables/*.parquet`` (DESIGN.md). Every part is optional
except at least one known table; a table that is present must have its columns.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from ccs_dist.artifacts.run_dir import TABLE_SUFFIX, RunDir
from ccs_dist.artifacts.schemas import csv_safe
from ccs_dist.core.errors import UserError

log = logging.getLogger(__name__)

# required columns per known table; anything else in a table is kept and shown where it makes sense
REQUIRED: dict[str, tuple[str, ...]] = {
    "spans": ("model", "layer", "head", "rank", "text", "variance"),
    "labels": ("model", "layer", "head", "label"),
    "judgments": ("model", "layer", "head", "rank", "aligned", "judge"),
    "ccs": ("model", "layer", "head", "ccs"),
    "ccs_at_k": ("model", "k", "fraction"),
    "judge_validation": ("judge", "n", "kappa"),
    "evaluation": ("model", "task", "condition", "metric", "value"),
    "agreement": (),
    "attribution": ("model", "dataset", "layer", "head", "method", "value"),
    "head_images": ("model", "layer", "head", "direction", "rank", "sign", "image_id", "projection"),
    "head_thumbnails": ("image_id", "data_uri"),
    "head_scores": ("model", "layer", "head", "score", "value"),
    "ccs_intervals": ("model", "k", "share"),
    "score_agreement": ("model", "score_a", "score_b", "spearman"),
}
KNOWN = tuple(REQUIRED)


def default_paper_reference() -> Path:
    """The paper's published figures, shipped as package data."""
    return Path(__file__).parent / "data" / "paper_reference.json"


@dataclass
class RunData:
    run_dir: Path
    manifest: dict[str, Any]
    tables: dict[str, pl.DataFrame]
    table_paths: dict[str, Path]
    paper: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # problems worth showing but not fatal
    stage_records: list[dict[str, Any]] = field(default_factory=list)  # RUN_DIR/stages/*/*/manifest.json

    def get(self, name: str) -> pl.DataFrame | None:
        return self.tables.get(name)


def _read_manifest(run_dir: Path, notes: list[str]) -> dict[str, Any]:
    path = RunDir(run_dir).manifest
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        notes.append(f"manifest.json could not be read ({e}); the summary is incomplete")
        return {}
    if not isinstance(data, dict):
        notes.append("manifest.json is not a JSON object; ignored")
        return {}
    return data


def find_tables(run_dir: Path, manifest: dict[str, Any], notes: list[str] | None = None) -> dict[str, Path]:
    """name -> parquet path: the manifest's ``tables`` first, then ``tables/*.parquet``, then ``*.parquet``.

    A manifest entry outside the run directory (``../x.parquet``, an absolute path, a link leading out)
    is ignored with a note: the report writes a CSV beside each table and must not write elsewhere."""
    found: dict[str, Path] = {}
    listed = manifest.get("tables")
    root = run_dir.resolve()
    if isinstance(listed, dict):
        for name, rel in listed.items():
            p = run_dir / str(rel)
            if root not in p.resolve().parents:
                if notes is not None:
                    notes.append(f"manifest table {name!r} points outside the run directory ({rel}); ignored")
                continue
            if p.suffix == TABLE_SUFFIX and p.exists():
                found[str(name)] = p
    for name, p in RunDir(run_dir).list_tables().items():
        found.setdefault(name, p)
    return found


def load_run(run_dir: str | Path, paper_reference: str | Path | None = None) -> RunData:
    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise UserError(f"run directory {run_dir} does not exist; give the output directory of a run (it holds tables/*.parquet)")
    if not run_dir.is_dir():
        raise UserError(f"{run_dir} is not a directory; give the output directory of a run (it holds tables/*.parquet)")
    notes: list[str] = []
    manifest = _read_manifest(run_dir, notes)
    paths = find_tables(run_dir, manifest, notes)
    if not any(name in KNOWN for name in paths):
        raise UserError(
            f"no tables in {run_dir}: expected tables/*.parquet ({', '.join(KNOWN)}); run the pipeline first, or point at its output directory"
        )
    tables: dict[str, pl.DataFrame] = {}
    for name, path in paths.items():
        try:
            df = pl.read_parquet(path)
        except Exception as e:  # noqa: BLE001 - pyarrow/polars raise many kinds for a broken file
            raise UserError(f"table {path} cannot be read as parquet ({type(e).__name__}); re-run the stage that wrote it") from None
        missing = [c for c in REQUIRED.get(name, ()) if c not in df.columns]
        if missing:
            raise UserError(
                f"table {path} lacks columns {', '.join(missing)} (has {', '.join(df.columns)}); "
                f"it must have {', '.join(REQUIRED[name])}: re-run the stage that wrote it"
            )
        tables[name] = df
    paper = load_paper(paper_reference, notes)
    return RunData(run_dir, manifest, tables, paths, paper, notes, read_stage_records(run_dir))


def read_stage_records(run_dir: Path) -> list[dict[str, Any]]:
    """Model, stage and compute seconds of each finished stage, from ``RUN_DIR/stages/<model>/<stage>/manifest.json``
    (what the artifacts cost when they were made, whatever the last invocation reused)."""
    out = []
    for path in RunDir(run_dir).stage_manifests():
        try:
            m = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not isinstance(m, dict):
            continue
        try:
            seconds = float(m.get("seconds"))
        except (TypeError, ValueError):
            continue
        out.append({"model": m.get("model"), "stage": m.get("stage") or path.parent.name, "seconds": seconds})
    return out


def load_paper(path: str | Path | None, notes: list[str]) -> dict[str, Any]:
    explicit = path is not None
    p = Path(path) if explicit else default_paper_reference()
    if not p.exists():
        if explicit:
            raise UserError(f"paper reference {p} not found; give the path of paper_reference.json or leave --paper out")
        notes.append(f"paper reference figures not found at {p}; shown without them")
        return {}
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        if explicit:
            raise UserError(f"paper reference {p} is not valid JSON ({e}); give a valid paper_reference.json") from None
        notes.append(f"paper reference {p} could not be read; shown without it")
        return {}
    return data if isinstance(data, dict) else {}


def write_csvs(data: RunData) -> dict[str, Path]:
    """Each parquet table as CSV beside it (nested columns JSON-encoded); name -> CSV path."""
    out: dict[str, Path] = {}
    for name, path in data.table_paths.items():
        df = data.tables.get(name)
        if df is None:
            continue
        nested = [c for c, t in df.schema.items() if t.is_nested()]
        if nested:
            df = df.with_columns(pl.col(c).map_elements(lambda v: json.dumps(v if not hasattr(v, "to_list") else v.to_list(), default=str),
                                                        return_dtype=pl.String) for c in nested)
        csv = path.with_suffix(".csv")
        tmp = csv.with_suffix(".csv.tmp")
        csv_safe(df).write_csv(tmp)
        tmp.replace(csv)
        out[name] = csv
    return out
