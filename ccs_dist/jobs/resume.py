"""Finished stages of a run, on disk: each stage's tables written atomically with a manifest written last.

``RUN_DIR/stages/<model-slug>/<stage>/`` holds ``<table>.parquet`` files and ``manifest.json`` with the
spec section hash, the hashes of the inputs, the versions and the timing. A stage is reused when its
manifest exists and its key (what produced it) is the same. With a remote run root the stage is written
to the local mirror and published (the old manifest removed first, the new one last); one missing here is
fetched from the root.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import polars as pl

from ccs_dist.stages.chain import StageOutput
from ccs_dist.artifacts.run_dir import RunDir, table_file
from ccs_dist.artifacts.storage import local_dir, remote_root
from ccs_dist.artifacts.store import MANIFEST, atomic_write_json, read_json
from ccs_dist.artifacts.schemas import write_table


def slug(model_key: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", model_key)


def _is_manifest(name: str) -> bool:
    return name == MANIFEST


class StageStore:
    def __init__(self, run_root: str | Path):
        """``run_root``: the run's directory or a remote root's URI (``JobSpec.run_root``)."""
        self.root = RunDir(local_dir(run_root)).stages_dir
        self.remote = remote_root(run_root)

    def _dir(self, model_key: str, stage: str) -> Path:
        return self.root / slug(model_key) / stage

    def _rel(self, model_key: str, stage: str) -> str:
        return RunDir.stage_rel(slug(model_key), stage)

    def load(self, model_key: str, stage: str, key: str) -> StageOutput | None:
        """The stage's tables and its manifest (as facts), when it finished under ``key``."""
        d = self._dir(model_key, stage)
        manifest = read_json(d / MANIFEST) if (d / MANIFEST).is_file() else None
        if (manifest is None or manifest.get("key") != key) and self.remote is not None \
                and self.remote.fetch_dir(self._rel(model_key, stage), d, _is_manifest):
            manifest = read_json(d / MANIFEST)
        if manifest is None or manifest.get("key") != key:
            return None
        return StageOutput({name: pl.read_parquet(d / table_file(name)) for name in manifest["tables"]}, manifest)

    def save(self, model_key: str, stage: str, key: str, tables: dict[str, pl.DataFrame], facts: dict[str, Any]) -> dict[str, Any]:
        d = self._dir(model_key, stage)
        if d.exists():
            shutil.rmtree(d)  # a stale or half-written stage: its manifest goes first, so it was never complete
        d.mkdir(parents=True)
        for name, df in tables.items():
            write_table(df, d / table_file(name))
        manifest = {"model": model_key, "stage": stage, "key": key, "tables": sorted(tables), **facts}
        atomic_write_json(d / MANIFEST, manifest)
        if self.remote is not None:
            rel = self._rel(model_key, stage)
            self.remote.delete(f"{rel}/{MANIFEST}")  # first: the old manifest must not vouch for new tables
            self.remote.publish_dir(d, rel, _is_manifest)
        return manifest

    def invalidate(self, model_key: str, stage: str) -> None:
        manifest = self._dir(model_key, stage) / MANIFEST
        manifest.unlink(missing_ok=True)
        if self.remote is not None:
            self.remote.delete(f"{self._rel(model_key, stage)}/{MANIFEST}")
