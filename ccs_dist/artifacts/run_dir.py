"""The layout of a run directory, spelled once (DESIGN.md)::

    RUN/manifest.json                        the run's manifest (written last)
    RUN/tables/NAME.parquet                  its tables (the report adds NAME.csv beside each)
    RUN/index.html                           the report (or OUT/index.html with ``--out``)
    RUN/stages/<model-slug>/<stage>/         one finished stage: NAME.parquet and manifest.json

Paths only: nothing here reads or writes a file except :meth:`RunDir.list_tables` (a directory listing).
"""

from __future__ import annotations

from pathlib import Path

from ccs_dist.artifacts.store import MANIFEST

TABLES = "tables"
REPORT = "index.html"
STAGES = "stages"
TABLE_SUFFIX = ".parquet"


def table_file(name: str) -> str:
    """``NAME.parquet``: a table's file name, in ``RUN/tables`` and in a stage's folder alike."""
    return f"{name}{TABLE_SUFFIX}"


class RunDir:
    """Paths of one run directory (a local folder; a remote run root is mirrored to one, see :mod:`.storage`)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"RunDir({str(self.root)!r})"

    @property
    def manifest(self) -> Path:
        return self.root / MANIFEST

    @property
    def tables_dir(self) -> Path:
        return self.root / TABLES

    def table(self, name: str) -> Path:
        """``RUN/tables/NAME.parquet``."""
        return self.tables_dir / table_file(name)

    def report(self, out_dir: str | Path | None = None) -> Path:
        """``index.html`` in ``out_dir`` (default: the run directory itself)."""
        return (Path(out_dir) if out_dir is not None else self.root) / REPORT

    @property
    def stages_dir(self) -> Path:
        return self.root / STAGES

    def stage_dir(self, model_slug: str, stage: str) -> Path:
        return self.stages_dir / model_slug / stage

    @staticmethod
    def stage_rel(model_slug: str, stage: str) -> str:
        """A stage's folder relative to the run root (``stages/<slug>/<stage>``, the key of a remote copy)."""
        return f"{STAGES}/{model_slug}/{stage}"

    def stage_manifests(self, stage: str = "*") -> list[Path]:
        """``RUN/stages/*/<stage>/manifest.json`` of every model, sorted (``stage="*"``: every stage)."""
        return sorted(self.stages_dir.glob(f"*/{stage}/{MANIFEST}"))

    def list_tables(self) -> dict[str, Path]:
        """name -> path of ``RUN/tables/*.parquet``, then of loose ``RUN/*.parquet`` (a table in both: the first)."""
        found: dict[str, Path] = {}
        for folder in (self.tables_dir, self.root):
            if folder.is_dir():
                for p in sorted(folder.glob(f"*{TABLE_SUFFIX}")):
                    found.setdefault(p.stem, p)
        return found

    def rel(self, path: str | Path) -> str:
        """``path`` relative to the run directory, as the manifest lists tables (``tables/NAME.parquet``)."""
        return str(Path(path).relative_to(self.root))

    @staticmethod
    def is_manifest(name: str) -> bool:
        return name == MANIFEST

    @staticmethod
    def is_stage_file(rel: str) -> bool:
        """A path relative to the run root that lies under ``stages/``."""
        return rel.startswith(f"{STAGES}/")
