"""``decompose`` and ``textspan``: probe images -> per-head contributions -> each head's spans.

Their probe flags (``--images`` ... ``--shards``) are the job spec's ``probe`` section, :class:`DecomposeConfig`;
textspan's span flags (``--m`` ... ``--stability-resamples``) its ``spans`` section, :class:`SpanConfig`.
"""

from __future__ import annotations

from ccs_dist.cli.options import DEFAULT_MODEL, probe_run, terminal
from ccs_dist.core.errors import check_dir_arg
from ccs_dist.decomposition.config import DecomposeConfig
from ccs_dist.spans.table import SpanConfig
from ccs_dist.stages.decompose import decompose_stage
from ccs_dist.stages.spans import checked_pool, spans_stage, write_spans_run


def decompose(
    self,
    probe: DecomposeConfig,
    model: str = DEFAULT_MODEL,
    pretrained: str | None = None,
    layers: int | list[int] = 4,
    device: str = "auto",
    precision: str | None = None,
    cache_dir: str = "cache",
):
    """Decompose every probe image's embedding into per-head direct contributions (cached, sharded).

    Args:
        model: open_clip architecture (ViT-B-16, ViT-B-16-SigLIP2, EVA02-B-16, ...), hf-hub:ORG/REPO, or hf:FOLDER / hf:OWNER/NAME (a transformers CLIPModel).
        pretrained: pretrained tag (openai, laion2b_s34b_b88k, ...), a checkpoint file, or none for random init.
        layers: an int n for the last n layers, or a list of 0-based layer indices, e.g. [8,9,10,11].
        device: cpu, cuda, cuda:N or auto (CUDA when available).
        precision: fp32 or bf16 (autocast, CUDA only); default bf16 on CUDA, fp32 on CPU.
        cache_dir: root of the content-addressed cache; a second run with the same inputs reuses it.
    """
    run = probe_run(model=model, pretrained=pretrained, layers=layers, device=device, precision=precision, cache_dir=cache_dir)
    loaded = run.model.load()
    art = decompose_stage(loaded, probe, layers=run.layers, cache_dir=run.cache_dir, progress=terminal()).artifact
    return (
        f"decomposed {art.n_images} images ({len(art.manifest['skipped'])} skipped) of {loaded.key}, "
        f"layers {list(art.layers)}: {art.path}"
    )


def textspan(
    self,
    probe: DecomposeConfig,
    spans: SpanConfig,
    model: str = DEFAULT_MODEL,
    pretrained: str | None = None,
    layers: int | list[int] = 4,
    pool: str = "default",
    out: str = "reports/textspan",
    device: str = "auto",
    cache_dir: str = "cache",
):
    """Find the m descriptions that span each head's output (TextSpan) and write the spans table.

    Writes OUT/tables/spans.parquet (model, layer, head, rank, text, variance, requested_rank,
    effective_rank, stability, span1_stability, unit) and OUT/manifest.json. --precision is the model's too.

    Args:
        model: open_clip architecture (ViT-B-16, ViT-B-16-SigLIP2, EVA02-B-16, ...), hf-hub:ORG/REPO, or hf:FOLDER / hf:OWNER/NAME (a transformers CLIPModel).
        pretrained: pretrained tag (openai, laion2b_s34b_b88k, ...), a checkpoint file, or none for random init.
        layers: an int n for the last n layers, or a list of 0-based layer indices.
        pool: description pool: default (the project's own pool), toy (it plus lines naming every toy-world
            factor value) or a text file, one description a line.
        out: output directory of the run.
        device: cpu, cuda, cuda:N or auto.
        cache_dir: root of the content-addressed cache.
    """
    check_dir_arg("--out", out)
    run = probe_run(model=model, pretrained=pretrained, layers=layers, device=device, precision=spans.precision,
                    cache_dir=cache_dir)
    checked_pool(pool, run.cache_dir, spans.m)  # cheap inputs first, before a model is loaded
    result = spans_stage(run.model.load(), probe=probe, layers=run.layers, pool=pool, spans=spans,
                         cache_dir=run.cache_dir, progress=terminal())
    path = write_spans_run(result, out)
    first = result.table.filter(result.table["rank"] == 0).sort("layer", "head").head(4)
    lines = [f"{row['layer']:>3} {row['head']:>3}  {row['text']}" for row in first.iter_rows(named=True)]
    return "\n".join([f"spans of {result.heads} heads written to {path}", "layer head  first span", *lines, "..."])
