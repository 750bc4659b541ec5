"""Attribution stage (optional in a job): each zero-shot prediction of one task attributed to the image
tower's heads, checked against exact ablation. The job spec section ``attribution`` is
:class:`~ccs_dist.attribution.run.AttributionConfig` itself; the tables are those of ``ccs-dist attribute`` (schemas in
:mod:`ccs_dist.attribution.run`)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import polars as pl

from ccs_dist.attribution.run import AttributionConfig, attribute_task
from ccs_dist.artifacts.run_dir import RunDir
from ccs_dist.models.loading import LoadedModel
from ccs_dist.artifacts.schemas import write_table

# result field -> table name (OUT/tables/NAME.parquet)
ATTRIBUTION_TABLES = {"attribution": "attribution", "curves": "attribution_curves",
                      "faithfulness": "attribution_faithfulness", "reliance": "attribution_reliance"}


@dataclass(frozen=True)
class AttributionStageResult:
    tables: dict[str, pl.DataFrame]  # by table name (ATTRIBUTION_TABLES values)
    meta: dict[str, Any]


def attribution_stage(loaded: LoadedModel, ccs: pl.DataFrame | None, config: AttributionConfig, *,
                      data_root: str | Path, progress: bool) -> AttributionStageResult:
    result = attribute_task(loaded, config.task, replace(config, data_root=Path(data_root)), ccs, progress=progress)
    return AttributionStageResult({table: getattr(result, field) for field, table in ATTRIBUTION_TABLES.items()}, dict(result.meta))


def write_attribution_tables(result: AttributionStageResult, out: str | Path) -> dict[str, Path]:
    """``OUT/tables/attribution*.parquet``, each with the run's facts as metadata; result field -> path."""
    layout = RunDir(out)
    return {field: write_table(result.tables[table], layout.table(table), metadata={**result.meta, "table": field})
            for field, table in ATTRIBUTION_TABLES.items()}
