"""Attribution stage (optional in a job): each zero-shot prediction of one task attributed to the image
tower's heads, checked against exact ablation. The job spec section ``attribution`` is
:class:`AttributionStageConfig`; the tables are those of ``ccs-dist attribute`` (schemas in
:mod:`ccs_dist.attribution.run`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
from pydantic import Field

from ccs_dist.attribution.run import AttributionConfig, attribute_task
from ccs_dist.models.loading import LoadedModel
from ccs_dist.stages.config import StageConfig
from ccs_dist.artifacts.schemas import write_table

# result field -> table name (OUT/tables/NAME.parquet)
ATTRIBUTION_TABLES = {"attribution": "attribution", "curves": "attribution_curves",
                      "faithfulness": "attribution_faithfulness", "reliance": "attribution_reliance"}
_DEFAULT = AttributionConfig()


class AttributionStageConfig(StageConfig):
    """What to attribute (job spec section ``attribution``; a job runs the stage when ``enabled``)."""

    enabled: bool = False
    task: str = "cifar10"  # one classification task, or NAME@PATH
    limit: int | None = Field(None, ge=1)  # at most this many images, evenly spaced
    samples: int = Field(_DEFAULT.samples, ge=0)  # images that also get exact effects and deletion curves
    deletions: int = Field(_DEFAULT.deletions, ge=1)  # most heads deleted along a curve
    seeds: tuple[int, ...] = Field(_DEFAULT.seeds, min_length=1)  # seeds of the random ranking
    top_k: int = Field(_DEFAULT.top_k, ge=1)  # heads per class in the reliance table
    threshold: float = _DEFAULT.threshold  # alignment below which a relied-on head is flagged unexpected
    batch_size: int = Field(_DEFAULT.batch_size, ge=1)
    templates_per_class: int | None = Field(None, ge=1)
    workers: int = Field(_DEFAULT.num_workers, ge=0)
    download: bool = False

    def attribution_config(self, *, data_root: str | Path) -> AttributionConfig:
        return AttributionConfig(
            data_root=Path(data_root), batch_size=self.batch_size, num_workers=self.workers, limit=self.limit,
            samples=self.samples, deletions=self.deletions, seeds=self.seeds, top_k=self.top_k, threshold=self.threshold,
            templates_per_class=self.templates_per_class, download=self.download,
        )


@dataclass(frozen=True)
class AttributionStageResult:
    tables: dict[str, pl.DataFrame]  # by table name (ATTRIBUTION_TABLES values)
    meta: dict[str, Any]


def attribution_stage(loaded: LoadedModel, ccs: pl.DataFrame | None, config: AttributionStageConfig, *,
                      data_root: str | Path, progress: bool) -> AttributionStageResult:
    result = attribute_task(loaded, config.task, config.attribution_config(data_root=data_root), ccs, progress=progress)
    return AttributionStageResult({table: getattr(result, field) for field, table in ATTRIBUTION_TABLES.items()}, dict(result.meta))


def write_attribution_tables(result: AttributionStageResult, out: str | Path) -> dict[str, Path]:
    """``OUT/tables/attribution*.parquet``, each with the run's facts as metadata; result field -> path."""
    folder = Path(out) / "tables"
    return {field: write_table(result.tables[table], folder / f"{table}.parquet", metadata={**result.meta, "table": field})
            for field, table in ATTRIBUTION_TABLES.items()}
