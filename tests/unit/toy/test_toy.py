"""The toy world, its training, its ground truth and the outcome tables, on small inputs."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from ccs_dist.data.toy import world
from ccs_dist.toy.ground_truth import ground_truth_table, probe_factors, variance_share
from ccs_dist.toy.outcomes import toy_tables, weighted_ccs
from ccs_dist.toy.train import TrainConfig, multi_positive_clip_loss, train
from tests.support.cli import run_cli


def test_rendering_is_deterministic_and_factors_show():
    a = world.render(world.sample_scenes(np.random.default_rng(3), 64), np.random.default_rng(4))
    b = world.render(world.sample_scenes(np.random.default_rng(3), 64), np.random.default_rng(4))
    assert a.shape == (64, 32, 32, 3) and a.dtype == np.uint8 and np.array_equal(a, b)
    one = world.Scenes(np.array([[0, 1, 0, 1, 0], [0, 1, 3, 1, 1]]))  # a large red square, top left / bottom right
    img = world.render(one, np.random.default_rng(0)).astype(int)
    red = (img[..., 0] > 150) & (img[..., 1] < 110)
    assert red[0, :16, :16].sum() > 60 and red[0, 16:, 16:].sum() == 0
    assert red[1, 16:, 16:].sum() > 60 and red[1, :16, :16].sum() == 0
    rows_std = img[1, :, :12, :].mean(axis=(1, 2))  # the striped background alternates every 2 rows
    assert abs(rows_std[0] - rows_std[2]) > 30


def test_captions_and_consistency():
    assert world.caption({f: world.FACTORS[f][0] for f in world.FACTOR_NAMES}) == \
        "a small red circle at the top left on a plain background"
    assert world.caption({"position": "bottom right"}) == "an object at the bottom right"
    with pytest.raises(ValueError):
        world.caption({})
    images = np.array([[0, 0, 0, 0, 0], [1, 0, 0, 0, 0]])
    mention = np.array([[True, False, False, False, False], [False, True, False, False, False]])
    assert world.consistency(images, mention, images).tolist() == [[True, False], [True, True]]


def test_contrast_groups_differ_in_one_factor_only():
    scenes, varied = world.sample_contrast_groups(np.random.default_rng(0), 16, 4)
    groups = scenes.values_NF.reshape(16, 4, 5)
    for g in range(16):
        f = varied[g * 4]
        same = np.delete(groups[g], f, axis=1)
        assert (same == same[0]).all()
        assert len(set(groups[g][:, f])) == min(4, len(world.FACTORS[world.FACTOR_NAMES[f]]))


def test_variance_share_is_eta_squared():
    rng = np.random.default_rng(0)
    classes = np.repeat([0, 1], 500)
    signal = np.where(classes == 0, -1.0, 1.0)[:, None] * np.array([[1.0, 0.0]])
    noise = rng.normal(0, 1.0, (1000, 2)) * np.array([[1.0, 0.0]])
    # between-class variance 1, within 1 in dimension 0; dimension 1 is constant
    assert variance_share(signal + noise, classes) == pytest.approx(0.5, abs=0.05)
    assert variance_share(signal, classes) == pytest.approx(1.0)
    assert variance_share(noise, classes) < 0.01
    assert variance_share(np.ones((10, 3)), np.arange(10) % 2) == 0.0


def test_ground_truth_finds_the_planted_head():
    rng = np.random.default_rng(1)
    n = 600
    factors = {f: rng.integers(0, len(world.FACTORS[f]), n) for f in world.FACTOR_NAMES}
    heads = rng.normal(0, 0.1, (n, 1, 2, 4))
    heads[:, 0, 1, 0] += factors["shape"] * 1.0  # head 1 carries shape
    gt = ground_truth_table("m", heads, np.ones((n, 4)), [7], factors)
    assert gt.height == 2 * 5 and set(gt.columns) == {"model", "layer", "head", "factor", "variance_share", "selectivity"}
    top = probe_factors(gt).sort("head")
    assert top["probe_factor"][1] == "shape" and top["selectivity"][1] > 0.9 and top["layer"][1] == 7
    assert top["selectivity"][0] < 0.6


def test_loss_rewards_every_consistent_pair():
    positives = np.array([[1, 1, 0], [0, 0, 1], [0, 0, 0]], bool)  # caption 0 fits images 0 and 1; caption 2 fits none
    import torch

    good = torch.tensor([[5.0, 5.0, -5.0], [-5.0, -5.0, 5.0], [-5.0, -5.0, -5.0]])
    bad = torch.tensor([[-5.0, -5.0, 5.0], [5.0, 5.0, -5.0], [5.0, 5.0, 5.0]])
    pos = torch.from_numpy(positives)
    assert multi_positive_clip_loss(good, pos) < 0.01 < 5 < multi_positive_clip_loss(bad, pos)


def test_null_captions_must_tell_no_image_from_another():
    import torch

    from ccs_dist.data.toy.pool import null_vocabulary, toy_words
    from ccs_dist.toy.train import null_caption_loss, null_captions

    assert abs(float(null_caption_loss(torch.full((3, 8), 2.0)))) < 1e-6
    assert float(null_caption_loss(torch.tensor([[9.0] + [0.0] * 7]))) > 1.0
    vocabulary = null_vocabulary()
    assert len(vocabulary) > 500 and not set(vocabulary) & toy_words() and {"red", "circle", "striped"} <= toy_words()
    texts = null_captions(np.random.default_rng(0), 50, vocabulary)
    assert all(1 <= len(t.split()) <= 8 and set(t.split()) <= set(vocabulary) for t in texts)


def test_a_reduced_model_trains_and_its_loss_falls():
    config = TrainConfig(steps=40, batch_size=64, warmup=5, lr=2e-3, null_steps=4, null_captions=16, arch="ccs-tiny", threads=2)
    result = train(config)
    first, last = np.mean(result.losses[:5]), np.mean(result.losses[35:40])
    assert len(result.losses) == 44 and np.isfinite(result.losses).all()
    assert last < 0.8 * first, (first, last)
    assert "visual.transformer.resblocks.0.attn.in_proj_weight" in result.state_dict


def test_training_is_bit_for_bit_reproducible_and_leaves_torch_settings_as_found(tmp_path):
    import torch

    from ccs_dist.toy.train import save_weights

    config = TrainConfig(steps=3, batch_size=16, warmup=1, null_steps=2, null_captions=8, arch="ccs-tiny", threads=2)
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    digests = [save_weights(train(config).state_dict, tmp_path / f"run{i}.safetensors") for i in range(2)]
    other_seed = save_weights(train(TrainConfig(**{**config.__dict__, "seed": 1})).state_dict, tmp_path / "seed1.safetensors")
    assert digests[0] == digests[1] != other_seed
    assert (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()) == (threads, deterministic)


def _tables():
    heads = [(0, 0, "colour"), (0, 1, "texture"), (1, 0, "shape"), (1, 1, "colour")]
    gt_rows, ccs_rows, span_rows, judg_rows = [], [], [], []
    labels = {(0, 0): "colour", (0, 1): "background texture", (1, 0): "circles", (1, 1): "photo style"}
    for layer, head, factor in heads:
        for f in world.FACTOR_NAMES:
            share = 0.8 if f == factor else 0.05
            gt_rows.append({"model": "m", "layer": layer, "head": head, "factor": f, "variance_share": share, "selectivity": share / 1.0})
        aligned = [True, True, False, False, False] if (layer, head) == (0, 1) else [True] * 4 + [False]
        variance = [0.6, 0.3, 0.04, 0.03, 0.03]
        for rank in range(5):
            span_rows.append({"model": "m", "layer": layer, "head": head, "rank": rank, "text": f"t{rank}", "variance": variance[rank]})
            judg_rows.append({"model": "m", "layer": layer, "head": head, "rank": rank, "text": f"t{rank}",
                              "label": labels[(layer, head)], "aligned": aligned[rank], "judge": "j", "error": None})
        ccs_rows.append({"model": "m", "layer": layer, "head": head, "label": labels[(layer, head)], "ccs": sum(aligned),
                         "category": "high" if sum(aligned) >= 4 else "low"})
    ev = []
    top1 = {"original": {"colour": 100, "shape": 100, "position": 100, "size": 100, "texture": 100},
            "concept:colour": {"colour": 60, "shape": 98, "position": 100, "size": 100, "texture": 96},
            "high": {"colour": 70, "shape": 80, "position": 100, "size": 100, "texture": 100},
            "low": {"colour": 100, "shape": 100, "position": 99, "size": 100, "texture": 100}}
    for cond, accs in top1.items():
        for f, v in accs.items():
            ev.append({"model": "m", "task": f"toy-{f}", "condition": cond, "seed": None, "n_pruned": 2, "metric": "top1", "value": float(v)})
    for seed in (0, 1, 2):
        for f in world.FACTOR_NAMES:
            ev.append({"model": "m", "task": f"toy-{f}", "condition": "random", "seed": seed, "n_pruned": 2, "metric": "top1", "value": 95.0})
    return {"ground_truth": pl.DataFrame(gt_rows), "ccs": pl.DataFrame(ccs_rows), "spans": pl.DataFrame(span_rows),
            "judgments": pl.DataFrame(judg_rows), "evaluation": pl.DataFrame(ev)}


def test_weighted_ccs_credits_a_binary_factor_head():
    t = _tables()
    w = {(r["layer"], r["head"]): r["ccs_weighted"] for r in weighted_ccs(t["spans"], t["judgments"]).iter_rows(named=True)}
    assert w[(0, 1)] == pytest.approx(4.5)  # 2 aligned spans of 5, but 90 % of the variance
    assert w[(0, 0)] == pytest.approx(5 * 0.97)


def test_outcome_tables():
    out = toy_tables(_tables())
    heads = out["toy_heads"].sort("layer", "head")
    assert heads["agrees"].to_list() == [True, True, True, False]
    assert heads["label_factors"].to_list() == ["colour", "texture", "shape", ""]
    rows = {r["check"]: r for r in out["toy_outcomes"].iter_rows(named=True)}
    assert all(rows[f"zero-shot top-1 on toy-{f}"]["passed"] for f in world.FACTOR_NAMES)
    agree = rows["label names the probe factor, heads with variance-weighted CCS >= 4"]
    assert agree["value"] == pytest.approx(0.75) and agree["n"] == 4 and agree["passed"] is False
    colour = next(r for c, r in rows.items() if c.startswith("top-1 drop on toy-colour pruning concept:colour"))
    assert colour["value"] == pytest.approx(0.4) and colour["reference"] == pytest.approx(0.015) and colour["passed"]
    headline = next(r for c, r in rows.items() if c.startswith("high-CCS drop exceeds"))
    assert headline["value"] == pytest.approx(0.1) and headline["reference"] == pytest.approx(0.05) and headline["passed"]


def test_the_headline_is_not_assessed_when_no_head_is_low_ccs():
    t = _tables()
    t["evaluation"] = t["evaluation"].with_columns(
        pl.when(pl.col("condition") == "low").then(0).otherwise(pl.col("n_pruned")).alias("n_pruned"),
        pl.when(pl.col("condition") == "low").then(100.0).otherwise(pl.col("value")).alias("value"))
    rows = {r["check"]: r for r in toy_tables(t)["toy_outcomes"].iter_rows(named=True)}
    headline = next(r for c, r in rows.items() if c.startswith("high-CCS drop exceeds"))
    assert headline["value"] == pytest.approx(0.1) and headline["passed"] is None  # high > random, but no low set


def test_train_toy_rejects_bad_flags_in_one_line(tmp_path):
    proc = run_cli("train-toy", "--batch_size", "6", "--out", str(tmp_path / "w.safetensors"))
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error: ")]
    assert proc.returncode != 0 and len(errors) == 1 and "multiple of 4" in errors[0]
    proc = run_cli("train-toy", "--steps", "1", "--out", str(tmp_path / "w.pt"))
    assert proc.returncode != 0 and "safetensors" in proc.stderr and not (tmp_path / "w.pt").exists()
