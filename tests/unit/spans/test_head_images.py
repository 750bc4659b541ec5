"""Top and bottom images per head from a decomposition artifact, their thumbnails, and the run-directory step."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import polars as pl
from PIL import Image

from ccs_dist.decomposition.image_set import DecompositionArtifact
from ccs_dist.spans.head_images import HeadImagesConfig, head_images_table
from ccs_dist.data.images import FolderImageSet
from ccs_dist.report.head_images import THUMB_MAX_CHARS, THUMB_PX, add_head_images, thumbnail_uri
from ccs_dist.artifacts.store import atomic_save_npy

LAYERS, H, E = (2, 3), 2, 8


def _artifact(path, heads_NLHE: np.ndarray, ids: list[str], shard_size: int, fingerprint: str = "x") -> DecompositionArtifact:
    path.mkdir(parents=True, exist_ok=True)
    n = heads_NLHE.shape[0]
    names = []
    for s, lo in enumerate(range(0, n, shard_size)):
        name = f"{s:05d}"
        hi = min(lo + shard_size, n)
        atomic_save_npy(path / f"heads-{name}.npy", heads_NLHE[lo:hi].astype(np.float32))
        emb = heads_NLHE[lo:hi].sum((1, 2)) + 3.0  # any embedding with a norm well away from 0
        atomic_save_npy(path / f"embedding-{name}.npy", emb.astype(np.float32))
        atomic_save_npy(path / f"rest-{name}.npy", np.zeros((hi - lo, E), np.float32))
        (path / f"ids-{name}.txt").write_text("\n".join(ids[lo:hi]) + "\n", encoding="utf-8")
        names.append(name)
    manifest = {"layers": list(LAYERS), "n_images": n, "shards": names, "num_heads": H, "embed_dim": E, "images": fingerprint}
    (path / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    return DecompositionArtifact(path, manifest)


def _planted(n: int = 60, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Head terms whose variance lies mostly along one planted unit direction per head; returns (terms, strengths)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 0.01, (n, len(LAYERS), H, E))
    strength_N = rng.normal(0, 1, n)
    for li in range(len(LAYERS)):
        for h in range(H):
            u = np.zeros(E)
            u[(li * H + h) % E] = 1.0
            x[:, li, h] += strength_N[:, None] * u * (1 + h)
    return x, strength_N


def _reference(x_NLHE: np.ndarray, layer_index: int, head: int) -> np.ndarray:
    """Projections onto the first principal component of the normalised, centred head terms (plain numpy)."""
    x = x_NLHE.astype(np.float32).astype(np.float64)
    emb = (x_NLHE.sum((1, 2)) + 3.0).astype(np.float32).astype(np.float64)
    t = x[:, layer_index, head] / np.linalg.norm(emb, axis=-1)[:, None]
    t = t - t.mean(0)
    u = np.linalg.svd(t, full_matrices=False)[2][0]
    p = t @ u
    return p if p.max() >= -p.min() else -p


def test_top_and_bottom_images_follow_the_first_principal_component(tmp_path):
    x, _ = _planted()
    ids = [f"img{i:03d}" for i in range(x.shape[0])]
    table = head_images_table("m", _artifact(tmp_path / "a", x, ids, shard_size=25), HeadImagesConfig(n_images=5))
    assert table.columns == ["model", "layer", "head", "direction", "rank", "sign", "image_id", "projection"]
    assert table.height == len(LAYERS) * H * 2 * 5
    for li, layer in enumerate(LAYERS):
        for h in range(H):
            ref = _reference(x, li, h)
            rows = table.filter((pl.col("layer") == layer) & (pl.col("head") == h)).sort("sign", "rank", descending=[True, False])
            top, bottom = rows.filter(pl.col("sign") == 1), rows.filter(pl.col("sign") == -1)
            assert top["image_id"].to_list() == [ids[i] for i in np.argsort(-ref)[:5]]
            assert bottom["image_id"].to_list() == [ids[i] for i in np.argsort(ref)[:5]]
            np.testing.assert_allclose(top["projection"].to_numpy(), np.sort(ref)[::-1][:5], rtol=1e-6, atol=1e-9)
            assert top["projection"][0] >= -bottom["projection"][0]  # oriented: the most extreme image on the + side


def test_shards_do_not_change_the_result(tmp_path):
    x, _ = _planted(n=50, seed=3)
    ids = [f"i{i}" for i in range(50)]
    one = head_images_table("m", _artifact(tmp_path / "one", x, ids, shard_size=50), HeadImagesConfig(n_images=4, n_directions=2))
    many = head_images_table("m", _artifact(tmp_path / "many", x, ids, shard_size=7), HeadImagesConfig(n_images=4, n_directions=2))
    assert one["image_id"].to_list() == many["image_id"].to_list()
    np.testing.assert_allclose(one["projection"].to_numpy(), many["projection"].to_numpy(), rtol=1e-6, atol=1e-9)
    assert sorted(one["direction"].unique().to_list()) == [0, 1]


def test_thumbnail_is_a_small_webp_data_uri():
    rng = np.random.default_rng(0)
    busy = Image.fromarray(rng.integers(0, 255, (300, 400, 3), dtype=np.uint8))  # noise: the hardest case for the budget
    uri = thumbnail_uri(busy)
    assert uri.startswith("data:image/webp;base64,") and len(uri) <= THUMB_MAX_CHARS
    im = Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))
    assert im.format == "WEBP" and im.size == (THUMB_PX, THUMB_PX)


def test_run_directory_gets_head_image_tables_from_its_stage_manifests(tmp_path):
    x, _ = _planted(n=30)
    images = tmp_path / "probe"
    images.mkdir()
    for i in range(30):
        Image.new("RGB", (64, 64), (8 * i, 100, 200)).save(images / f"{i:03d}.png")
    image_set = FolderImageSet(images)
    ids = [image_set.image_id(i) for i in range(30)]
    art = _artifact(tmp_path / "cache" / "decompose" / "k", x, ids, shard_size=16, fingerprint=image_set.fingerprint)
    run = tmp_path / "run"
    stage = run / "stages" / "m" / "spans"
    stage.mkdir(parents=True)
    (stage / "manifest.json").write_text(json.dumps({"model": "toy/m", "stage": "spans", "seconds": 1.0,
                                                     "metadata": {"decomposition": str(art.path), "images": f"folder:{images}"}}))
    assert add_head_images(run) == []
    table = pl.read_parquet(run / "tables" / "head_images.parquet")
    thumbs = pl.read_parquet(run / "tables" / "head_thumbnails.parquet")
    assert set(table["model"]) == {"toy/m"} and set(table["image_id"]) == set(thumbs["image_id"])
    assert thumbs["data_uri"].str.starts_with("data:image/webp;base64,").all()
    # a second call keeps the tables; a changed probe folder is said, not silently pictured
    mtime = (run / "tables" / "head_images.parquet").stat().st_mtime_ns
    assert add_head_images(run) == [] and (run / "tables" / "head_images.parquet").stat().st_mtime_ns == mtime
    # tables a stage wrote (no head_images key in their metadata) are the stage's: kept as they are
    from ccs_dist.artifacts.schemas import write_table

    write_table(table.head(2), run / "tables" / "head_images.parquet")
    assert add_head_images(run) == [] and pl.read_parquet(run / "tables" / "head_images.parquet").height == 2
    (run / "tables" / "head_images.parquet").unlink()
    Image.new("RGB", (64, 64)).save(images / "new.png")
    notes = add_head_images(run)
    assert len(notes) == 1 and "changed since" in notes[0]
    assert not (run / "tables" / "head_images.parquet").exists()
