"""Which model a stage runs on, and the precision each stage computes in."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ccs_dist.core.errors import UserError
from ccs_dist.models.loading import LoadedModel, load_model
from ccs_dist.core.weights import model_key


@dataclass(frozen=True)
class ModelSpec:
    arch: str
    pretrained: str | None = None
    device: str | None = None
    precision: str | None = None

    @property
    def key(self) -> str:
        """The key the loaded model will have (known without loading it)."""
        return model_key(self.arch, self.pretrained)

    def load(self) -> LoadedModel:
        return load_model(self.arch, self.pretrained, device=self.device, precision=self.precision)


def at_precision(loaded: LoadedModel, precision: str) -> LoadedModel:
    """The same model (shared weights) computing under ``precision``: the span stage runs fp32 even when
    evaluation runs bf16, because bf16 head terms (~5e-3 relative error) change which texts TextSpan picks."""
    if precision == loaded.precision:
        return loaded
    if precision == "bf16" and loaded.device.type != "cuda":
        raise UserError(f"span precision bf16 needs a CUDA device ({loaded.key} is on {loaded.device}): use fp32")
    view = dataclasses.replace(loaded, precision=precision)
    view._weights_hash = getattr(loaded, "_weights_hash", None)  # same weights: keep the hash if computed
    return view


def stage_precisions(span_precision: str, model_precision: str) -> dict[str, str]:
    """What each stage computes in, for tables' metadata and the run manifest."""
    return {"decompose": span_precision, "text_embeddings": span_precision, "textspan": "fp64",
            "evaluate": model_precision}
