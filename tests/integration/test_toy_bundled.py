"""The bundled ccs-toy weights: they load by tag, are checked against their sha256 and have learned the toy world."""

from __future__ import annotations

import shutil

import polars as pl
import pytest

from ccs_dist.core.errors import UserError
from ccs_dist.models import loading
from ccs_dist.models.loading import BUNDLED, load_model
from ccs_dist.data.toy.world import FACTOR_NAMES


def test_bundled_weights_are_small_and_match_their_sha256():
    (entry,) = [b for b in BUNDLED if b.arch == "ccs-toy"]
    assert entry.path.is_file() and entry.path.stat().st_size <= 20 * 2**20
    loading.verify_bundled(entry)  # raises on a mismatch


def test_a_damaged_bundled_file_is_refused(tmp_path, monkeypatch):
    (entry,) = [b for b in BUNDLED if b.arch == "ccs-toy"]
    damaged = tmp_path / entry.file
    shutil.copy(entry.path, damaged)
    with open(damaged, "r+b") as f:
        f.seek(-8, 2)
        f.write(b"\x00" * 8)
    monkeypatch.setattr(loading, "WEIGHTS_DIR", tmp_path)
    with pytest.raises(UserError, match="sha256"):
        load_model("ccs-toy", entry.tag, device="cpu")


@pytest.fixture(scope="module")
def trained():
    return load_model("ccs-toy", "planted_v2", device="cpu")


def test_bundled_tag_loads_the_trained_model(trained):
    assert trained.key == "ccs-toy/planted_v2" and not trained.random_init
    assert (trained.num_layers, trained.num_heads, trained.embed_dim) == (4, 4, 64)


def test_outcome_1_zero_shot_on_held_out_toy_images(trained, tmp_path):
    """Zero-shot top-1 >= 0.9 on every toy task, read from real ImageFolder files by the evaluation loader."""
    from ccs_dist.evaluate.run import EvalConfig, evaluate
    from ccs_dist.ccs.head_sets import HeadSet
    from ccs_dist.data.toy.scenes import TASKS, write_task

    for task in TASKS:
        write_task(tmp_path, task, per_class=30, seed=7)  # 540 images, none of them seen in training
    table = evaluate(trained, list(TASKS), [HeadSet("original", ())], EvalConfig(data_root=tmp_path, batch_size=128))
    top1 = {r["task"]: r["value"] for r in table.filter(pl.col("metric") == "top1").iter_rows(named=True)}
    n = {r["task"]: r["value"] for r in table.filter(pl.col("metric") == "n").iter_rows(named=True)}
    assert set(top1) == {f"toy-{f}" for f in FACTOR_NAMES}
    assert sum(n.values()) == 540
    assert all(v >= 90.0 for v in top1.values()), top1


def test_random_init_is_at_chance_on_the_same_tasks(tmp_path):
    from ccs_dist.evaluate.run import EvalConfig, evaluate
    from ccs_dist.ccs.head_sets import HeadSet
    from ccs_dist.data.toy.scenes import write_task

    write_task(tmp_path, "toy-colour", per_class=30, seed=7)
    table = evaluate(load_model("ccs-toy", None, device="cpu"), ["toy-colour"], [HeadSet("original", ())],
                     EvalConfig(data_root=tmp_path, batch_size=128))
    assert table.filter(pl.col("metric") == "top1")["value"][0] < 50.0
