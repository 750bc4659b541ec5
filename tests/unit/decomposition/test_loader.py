"""The persistent loader: batches never span shards, workers give the same artifact as the main process."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from ccs_dist.decomposition.config import DecomposeConfig
from ccs_dist.decomposition.image_set import decompose_image_set
from ccs_dist.data.images import resolve_image_set
from ccs_dist.decomposition.loader import LoaderStats, micro_batch_size, model_batches
from ccs_dist.artifacts.store import ArtifactStore


def test_batches_follow_shards_and_report_bad_files(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(11):
        Image.new("RGB", (20, 16), (i * 20, 0, 0)).save(folder / f"{i:02d}.png")
    (folder / "05b.png").write_bytes(b"broken")  # sorts between 05 and 06: index 6
    images = resolve_image_set(str(folder))
    shards = [(0, range(0, 5)), (1, range(5, 10)), (2, range(10, 12))]
    stats = LoaderStats()
    to_tensor = lambda im: torch.from_numpy(np.asarray(im, np.float32)).permute(2, 0, 1)  # noqa: E731
    batches = list(model_batches(images, to_tensor, shards, batch_size=3, workers=2, device=torch.device("cpu"), stats=stats))
    assert [(b.shard, b.indices, [i for i, _ in b.bad], b.last_of_shard) for b in batches] == [
        (0, [0, 1, 2], [], False), (0, [3, 4], [], True),
        (1, [5, 7], [6], False), (1, [8, 9], [], True),
        (2, [10, 11], [], True),
    ]
    assert batches[0].images_B3WW.shape == (3, 3, 16, 20)
    assert float(batches[0].images_B3WW[1, 0, 0, 0]) == 20.0  # image 1, red channel
    assert stats.images == 12 and stats.first_batch_s is not None and stats.wait_s > 0


def test_micro_batches_spread_a_model_batch_over_the_workers():
    assert micro_batch_size(512, 8) == 64 and micro_batch_size(64, 4) == 16 and micro_batch_size(3, 0) == 3


def test_workers_give_the_same_artifact_as_the_main_process(tiny, cache_dir, tmp_path):
    images = resolve_image_set("synthetic:13", cache_dir)
    common = dict(layers=1, batch_size=4, shard_size=6, progress=False)
    main = decompose_image_set(tiny, images, ArtifactStore(tmp_path / "a"), DecomposeConfig(**common, workers=0))
    pooled = decompose_image_set(tiny, images, ArtifactStore(tmp_path / "b"), DecomposeConfig(**common, workers=2))
    assert pooled.shard_names == main.shard_names == ["00000", "00001", "00002"] and pooled.ids() == main.ids()
    for name in main.shard_names:
        for part, array in main.load_shard(name).items():
            np.testing.assert_allclose(pooled.load_shard(name)[part], array, rtol=1e-5, atol=1e-6)


def test_jpegs_decoded_on_the_device_match_the_cpu_path(tiny, tmp_path):
    """The device decoder (run here on the CPU) against PIL: same images to resampling rounding; a PNG, a
    greyscale JPEG and a corrupt file take the same way as on the CPU path."""
    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i, (w, h) in enumerate([(500, 375), (375, 500), (333, 500), (64, 48)]):
        smooth = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)).resize((w, h), Image.BICUBIC)
        smooth.save(folder / f"a{i}.jpg", quality=92)
    Image.fromarray(rng.integers(0, 256, (40, 50), dtype=np.uint8)).save(folder / "b_grey.jpg")
    Image.fromarray(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)).save(folder / "c.png")
    (folder / "d_broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    images = resolve_image_set(str(folder))
    shards = [(0, range(len(images)))]
    cpu = list(model_batches(images, tiny.preprocess, shards, 8, 0, torch.device("cpu")))
    dev = list(model_batches(images, tiny.preprocess, shards, 8, 2, torch.device("cpu"), decode="device"))
    assert [b.indices for b in dev] == [b.indices for b in cpu] == [[0, 1, 2, 3, 4, 5]]
    assert [i for i, _ in dev[0].bad] == [i for i, _ in cpu[0].bad] == [6]
    diff = (dev[0].images_B3WW - cpu[0].images_B3WW).abs()
    # measured: mean 0.0015, max 0.15 (normalised units; a pixel level is ~0.015): decoder and resampling rounding
    assert float(diff.mean()) < 0.005 and float(diff.max()) < 0.3, (float(diff.mean()), float(diff.max()))
    torch.testing.assert_close(dev[0].images_B3WW[5], cpu[0].images_B3WW[5])  # the PNG took the CPU path


def test_shard_writer_writes_in_order_and_surfaces_its_errors(tmp_path):
    import pytest

    from ccs_dist.decomposition.shard_writer import ShardWriter, shard_shapes
    from ccs_dist.artifacts.store import read_json

    writer = ShardWriter(shard_shapes(4, 1, 2, 3, "heads"), torch.device("cpu"))
    for name, value in (("00000", 1.0), ("00001", 2.0)):
        buffer = writer.take()
        buffer.add({"heads": torch.full((3, 1, 2, 3), value), "rest": torch.zeros(3, 3), "embedding": torch.ones(3, 3)},
                   ["a", "b", "c"])
        writer.submit(buffer, tmp_path, name, tmp_path / "progress.json", {"shards": [name]})
    writer.close()
    assert np.load(tmp_path / "heads-00001.npy").shape == (3, 1, 2, 3) and float(np.load(tmp_path / "heads-00001.npy").max()) == 2.0
    assert read_json(tmp_path / "progress.json") == {"shards": ["00001"]}
    assert (tmp_path / "ids-00000.txt").read_text() == "a\nb\nc\n"

    blocked = tmp_path / "not-a-folder"
    blocked.write_text("")
    writer = ShardWriter(shard_shapes(4, 1, 2, 3, "moments"), torch.device("cpu"))
    buffer = writer.take()
    buffer.add({"rest": torch.zeros(1, 3), "embedding": torch.ones(1, 3)}, ["a"])
    writer.submit(buffer, blocked, "00000", blocked / "progress.json", {})
    with pytest.raises(OSError):
        writer.close()
