"""The benchmark's options: the flags of ``ccs-dist benchmark`` (and the defaults a job's run uses)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ccs_dist.core.errors import UserError, check_at_least


@dataclass(frozen=True)
class BenchmarkConfig:
    """How the checks are computed; every null is seeded, so a run's checks are reproducible."""

    permutations: int = field(default=1000, metadata={"ge": 1, "help": "label / plan permutations of each permutation null"})
    null_sets: int = field(default=200, metadata={"ge": 1, "help": "matched random head sets (same size, same layers) per pruned set"})
    seed: int = field(default=0, metadata={"help": "seed of every permutation and random head set"})
    alpha: float = field(default=0.05, metadata={"help": "a check passes when its p-value is below alpha"})
    ccs_high: float = field(default=4.0, metadata={"help": "score at or above which a head counts as predicted high (precision / recall)"})

    def __post_init__(self) -> None:
        check_at_least(1, permutations=self.permutations, null_sets=self.null_sets)
        if not 0.0 < self.alpha < 1.0:
            raise UserError(f"alpha={self.alpha} is out of range: give a value between 0 and 1")
