"""What an executor needs of the job layer: one model's plan (its chain, what is done) and the books that record
each finished stage, stated as protocols.

The executors (:mod:`ccs_dist.distributed`) sit below the job layer (:mod:`ccs_dist.jobs`) and never import it;
the job layer's ``ModelPlan``, ``JobState`` and ``JobSpec`` satisfy these protocols structurally. Typing only:
nothing here runs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

if TYPE_CHECKING:  # annotations only: the chain imports torch, which a Ray driver need not load to schedule
    import polars as pl

    from ccs_dist.stages.chain import ChainConfig, Stage, StageOutput, TableRef

    Inputs = Mapping[TableRef, pl.DataFrame]  # a stage's input tables


class Resources(Protocol):
    """A job's ``resources`` section, as far as scheduling reads it."""

    @property
    def cpus_per_model(self) -> float: ...

    @property
    def gpus_per_model(self) -> float: ...

    @property
    def model_workers(self) -> int | None: ...  # most model actors alive at once (None: as many as fit)

    @property
    def shard_workers(self) -> int | None: ...  # workers sharing one model's sharded stage (None: one per shard)


class JobSettings(Protocol):
    @property
    def resources(self) -> Resources: ...


class Plan(Protocol):
    """One model's chain: its config, the stages enabled and those done (loaded or run)."""

    @property
    def key(self) -> str: ...

    @property
    def config(self) -> ChainConfig: ...

    @property
    def stages(self) -> Sequence[str]: ...

    @property
    def done(self) -> Mapping[str, StageOutput]: ...

    def next_stage(self) -> Stage | None: ...

    def inputs(self, stage: Stage) -> Inputs | None: ...  # None while a stage it reads is not done


P = TypeVar("P", bound=Plan)
P_contra = TypeVar("P_contra", bound=Plan, contravariant=True)


class Books(Protocol[P_contra]):
    """Where an executor records what finished (the job layer's ``JobState``): the stage store, timings."""

    @property
    def spec(self) -> JobSettings: ...

    def finish(self, plan: P_contra, stage: Stage, inputs: Inputs, output: StageOutput, seconds: float) -> None: ...

    def finish_shard(self, plan: P_contra, stage: Stage, index: int, record: dict[str, Any], seconds: float,
                     node: str) -> None: ...
