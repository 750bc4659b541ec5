"""``decompose`` and ``textspan``: probe images -> per-head contributions -> each head's spans."""

from __future__ import annotations

from ccs_dist.cli.options import DEFAULT_IMAGES, DEFAULT_MODEL, probe_run, terminal
from ccs_dist.core.errors import UserError, check_dir_arg, check_int


def decompose(
    self,
    model: str = DEFAULT_MODEL,
    pretrained: str | None = None,
    images: str = DEFAULT_IMAGES,
    layers: int | list[int] = 4,
    batch_size: int = 64,
    device: str = "auto",
    precision: str | None = None,
    cache_dir: str = "cache",
    on_bad_image: str = "skip",
    workers: int | None = None,
    keep: str = "heads",
    decode: str = "cpu",
):
    """Decompose every probe image's embedding into per-head direct contributions (cached, sharded).

    Args:
        model: open_clip architecture (ViT-B-32, ViT-B-16, ViT-L-14, ...) or hf-hub:ORG/REPO.
        pretrained: pretrained tag (openai, laion2b_s34b_b88k, ...), a checkpoint file, or none for random init.
        images: probe images: synthetic:N[:SEED], toy:N[:SEED] (the ccs-toy world, factors in labels.csv),
            a folder (flat or one sub-folder per class), folder:PATH,
            or NAME:ROOT for a torchvision dataset (cifar10, cifar100, imagenet, food101, stl10).
        layers: an int n for the last n layers, or a list of 0-based layer indices, e.g. [8,9,10,11].
        batch_size: images per forward pass.
        device: cpu, cuda, cuda:N or auto (CUDA when available).
        precision: fp32 or bf16 (autocast, CUDA only); default bf16 on CUDA, fp32 on CPU.
        cache_dir: root of the content-addressed cache; a second run with the same inputs reuses it.
        on_bad_image: skip (skip and count unreadable files) or error (stop at the first one).
        workers: data-loading worker processes (default min(4, cpus - 1)).
        keep: what the cached decomposition keeps: heads (fp32 per-head terms), heads_fp16 (half the disk), or
            moments (each head's count, sum and Gram per stability bucket: all TextSpan needs, constant in N).
        decode: where JPEGs are decoded: cpu (loader workers) or device (torchvision's decoder on the model's device).
    """
    from ccs_dist.stages.decompose import decompose_stage

    run = probe_run(model=model, pretrained=pretrained, images=images, layers=layers, batch_size=batch_size, device=device,
                    precision=precision, cache_dir=cache_dir, on_bad_image=on_bad_image, workers=workers,
                    keep=keep, decode=decode)
    loaded = run.model.load()
    art = decompose_stage(loaded, run.probe, layers=run.layers, cache_dir=run.cache_dir, progress=terminal()).artifact
    return (
        f"decomposed {art.n_images} images ({len(art.manifest['skipped'])} skipped) of {loaded.key}, "
        f"layers {list(art.layers)}: {art.path}"
    )


def textspan(
    self,
    model: str = DEFAULT_MODEL,
    pretrained: str | None = None,
    images: str = DEFAULT_IMAGES,
    layers: int | list[int] = 4,
    pool: str = "default",
    m: int = 5,
    rank: int = 80,
    method: str = "exact",
    out: str = "reports/textspan",
    batch_size: int = 64,
    device: str = "auto",
    precision: str = "fp32",
    cache_dir: str = "cache",
    on_bad_image: str = "skip",
    workers: int | None = None,
    rank_policy: str = "numerical",
    resamples: int = 8,
    keep: str = "heads",
    decode: str = "cpu",
):
    """Find the m descriptions that span each head's output (TextSpan) and write the spans table.

    Writes OUT/tables/spans.parquet (model, layer, head, rank, text, variance, requested_rank,
    effective_rank, stability, span1_stability) and OUT/manifest.json.

    Args:
        model: open_clip architecture (ViT-B-32, ViT-B-16, ViT-L-14, ...) or hf-hub:ORG/REPO.
        pretrained: pretrained tag (openai, laion2b_s34b_b88k, ...), a checkpoint file, or none for random init.
        images: probe images: synthetic:N[:SEED], toy:N[:SEED], a folder, folder:PATH, or NAME:ROOT (cifar10, imagenet, ...).
        layers: an int n for the last n layers, or a list of 0-based layer indices.
        pool: description pool: default (the project's own pool), toy (it plus lines naming every toy-world
            factor value) or a text file, one description a line.
        m: descriptions per head.
        rank: requested TextSpan rank (at most the embedding size); with rank_policy numerical each head
            uses min(rank, its numerical rank).
        method: exact, or faiss (candidates from a FAISS search along each head's principal directions,
            then exact TextSpan on them; for very large pools).
        out: output directory of the run.
        batch_size: images per forward pass.
        device: cpu, cuda, cuda:N or auto.
        precision: of the decomposition and text embeddings: fp32 (default; bf16 changes the spans) or bf16 (CUDA only).
        cache_dir: root of the content-addressed cache.
        on_bad_image: skip or error.
        workers: data-loading worker processes.
        keep: what the cached decomposition keeps: heads (fp32 per-head terms), heads_fp16 (half the disk), or
            moments (each head's count, sum and Gram per stability bucket: all TextSpan needs, constant in N).
        decode: where JPEGs are decoded: cpu (loader workers) or device (torchvision's decoder on the model's device).
        rank_policy: numerical (cap each head's rank at its numerical rank, so rounding cannot flip spans)
            or reference (the reference code's rank, noise directions included).
        resamples: random half-samples of the probe images for the stability columns (0: none).
    """
    from ccs_dist.stages.spans import SpansConfig, StabilitySection, checked_pool, spans_stage, write_spans_run

    if method not in ("exact", "faiss"):
        raise UserError(f"unknown method {method!r}: use exact or faiss")
    check_int("--m", m, 1)
    check_int("--rank", rank, 1)
    check_dir_arg("--out", out)
    if rank_policy not in ("numerical", "reference"):
        raise UserError(f"unknown rank_policy {rank_policy!r}: use numerical or reference")
    if precision not in ("fp32", "bf16"):
        raise UserError(f"unknown precision {precision!r}: use fp32 or bf16")
    if isinstance(resamples, bool) or not isinstance(resamples, int) or resamples < 0:
        raise UserError(f"resamples={resamples!r}: give an integer >= 0")
    run = probe_run(model=model, pretrained=pretrained, images=images, layers=layers, batch_size=batch_size, device=device,
                    precision=precision, cache_dir=cache_dir, on_bad_image=on_bad_image, workers=workers,
                    keep=keep, decode=decode)
    spans = SpansConfig.build(m=int(m), rank=int(rank), method=method, rank_policy=rank_policy, precision=precision,
                              stability=StabilitySection(resamples=resamples))
    checked_pool(pool, run.cache_dir, spans.m)  # cheap inputs first, before a model is loaded
    result = spans_stage(run.model.load(), probe=run.probe, layers=run.layers, pool=pool, spans=spans,
                         cache_dir=run.cache_dir, progress=terminal())
    path = write_spans_run(result, out)
    first = result.table.filter(result.table["rank"] == 0).sort("layer", "head").head(4)
    lines = [f"{row['layer']:>3} {row['head']:>3}  {row['text']}" for row in first.iter_rows(named=True)]
    return "\n".join([f"spans of {result.heads} heads written to {path}", "layer head  first span", *lines, "..."])
