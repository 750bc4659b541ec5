"""The decomposition of an image set as one pipeline: loader -> model -> host buffers -> writer thread.

The loader (:mod:`ccs_dist.decomposition.loader`) runs once over every remaining shard; each batch is decomposed and its
outputs copied into the shard's host buffer (non-blocking on CUDA); finished shards are written by the
writer thread (:mod:`ccs_dist.decomposition.shard_writer`) while the model goes on. With ``keep="moments"`` the heads
never leave the device: their moments are accumulated there (:mod:`ccs_dist.decomposition.moments`).

Axis letters: :mod:`ccs_dist.core.axes`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ccs_dist.decomposition.config import DecomposeConfig
from ccs_dist.decomposition.kernel import decompose, pool_unit_kinds
from ccs_dist.decomposition.moments import BucketMoments, bucket_of_images, usable_buckets
from ccs_dist.core.errors import UserError
from ccs_dist.data.images import ImageSet
from ccs_dist.decomposition.loader import LoaderStats, model_batches
from ccs_dist.models.loading import LoadedModel
from ccs_dist.decomposition.shard_writer import ShardWriter, shard_shapes

log = logging.getLogger(__name__)


def default_workers() -> int:
    return max(0, min(4, (os.cpu_count() or 1) - 1))


def _moment_deal(n_images: int, config: DecomposeConfig) -> np.ndarray:
    """Stability bucket of every image-set index (one bucket when none are kept), as the spans stage deals them."""
    n_buckets = usable_buckets(n_images, config.moment_buckets) if config.moment_buckets >= 2 else 0
    if n_buckets < 2:
        return np.zeros(n_images, dtype=np.int64)
    return bucket_of_images(n_images, n_buckets, config.moment_seed)


def stream_decomposition(
    loaded: LoadedModel,
    image_set: ImageSet,
    layers: Sequence[int],
    config: DecomposeConfig,
    work: Path,
    progress: dict[str, Any],
    stats: LoaderStats | None = None,
    *,
    only_shard: int | None = None,
) -> dict[str, Any]:
    """Decompose the shards not yet in ``progress`` into ``work``, updating ``progress`` (and its file) as
    shards are written. -> the manifest entries of the kept moments (empty unless ``keep="moments"``).

    ``only_shard``: decompose that one shard alone (one task of a sharded decomposition, see
    :func:`ccs_dist.decomposition.image_set.decompose_shard`): its progress and moments files carry the shard's name."""
    from tqdm.auto import tqdm

    n_total, size = len(image_set), config.shard_size
    n_shards = -(-n_total // size)
    start_shard = len(progress["shards"])
    done_images = min(start_shard * size, n_total)
    if start_shard and only_shard is None:
        log.info("resuming decomposition at shard %d/%d (%d images done)", start_shard, n_shards, done_images)
    n_layers, n_heads, dim = len(layers), loaded.num_heads, loaded.embed_dim
    n_pool = len(pool_unit_kinds(loaded))  # the attention pooling's units (SigLIP), after the heads on the unit axis
    moments = None
    kept_indices: list[int] = []
    if config.keep == "moments":
        moments = BucketMoments(n_layers * n_heads + n_pool, dim, _moment_deal(n_total, config), device=loaded.device)
    workers = config.workers if config.workers is not None else default_workers()
    todo = range(start_shard, n_shards) if only_shard is None else (only_shard,)
    shards = [(s, range(s * size, min((s + 1) * size, n_total))) for s in todo]
    writer = ShardWriter(shard_shapes(min(size, n_total), n_layers, n_heads, dim, config.keep, n_pool), loaded.device)
    progress_path = work / ("progress.json" if only_shard is None else f"progress-{only_shard:05d}.json")
    bar_total, bar_done = (n_total, done_images) if only_shard is None else (len(shards[0][1]), 0)
    bar = tqdm(total=bar_total, initial=bar_done, unit="img", desc=f"decompose {loaded.key}", disable=not config.progress)
    buffer = None
    batches = None
    try:
        batches = model_batches(image_set, loaded.preprocess, shards, config.batch_size, workers, loaded.device, stats=stats,
                                decode=config.decode)
        for batch in batches:
            if buffer is None:
                buffer = writer.take()
            for index, err in batch.bad:
                if config.on_bad_image == "error":
                    raise UserError(
                        f"unreadable image {image_set.image_id(index)} ({err}): fix or remove it, "
                        "or pass --on-bad-image skip to skip unreadable files"
                    )
                log.warning("skipping unreadable image %s (%s)", image_set.image_id(index), err)
                progress["skipped"].append({"id": image_set.image_id(index), "error": err})
            if batch.images_B3WW is not None:
                d = decompose(loaded, batch.images_B3WW, layers)
                outputs = {"rest": d.rest, "embedding": d.embedding}
                if moments is None:
                    outputs["heads"] = d.heads
                    if n_pool:
                        outputs["pool"] = d.pool
                else:
                    n = len(batch.indices)
                    units_NGE = d.heads.reshape(n, n_layers * n_heads, dim)
                    if n_pool:
                        units_NGE = torch.cat([units_NGE, d.pool], dim=1)
                    moments.update(units_NGE, d.embedding, batch.indices)
                    kept_indices += batch.indices
                buffer.add(outputs, [image_set.image_id(i) for i in batch.indices])
            bar.update(len(batch.indices) + len(batch.bad))
            if batch.last_of_shard:
                name = f"{batch.shard:05d}"
                progress["shards"].append(name if buffer.filled else None)
                progress["n_images"] += buffer.filled
                writer.submit(buffer, work, name, progress_path, progress)
                buffer = None
    finally:
        if batches is not None:
            batches.close()  # stops the loader's workers now, not when the traceback is freed
        bar.close()  # leaves the bar's line finished, so an error message starts on its own line
        writer.close()
    if moments is None or not kept_indices:
        return {}
    prefix = "" if only_shard is None else f"{only_shard:05d}-"
    return moments.save(work, np.asarray(kept_indices, dtype=np.int64), prefix=prefix)
