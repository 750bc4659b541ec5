"""Head sets from a ccs table, concept families, explicit lists, and the naive zeroed-column reference."""

import polars as pl
import pytest
import torch

from ccs_dist.core.errors import UserError
from ccs_dist.ccs.head_sets import (
    HeadSetConfig,
    build_head_sets,
    encode_image_head_sets_naive,
    label_families,
    load_concept_map,
    parse_explicit,
    zeroed_heads,
)

MODEL = "ViT-B-32/openai"


def _ccs_table():
    # last 2 of 12 layers scored, 12 heads each: high L11.H0-3 (ccs 5), low L10.H0-1 (ccs 0/1), moderate L10.H5
    rows = []
    for layer in (10, 11):
        for head in range(12):
            ccs, label = 4, "misc"
            if layer == 11 and head < 4:
                ccs, label = 5, ["Geographic locations", "Animals", "Colors", "city landmarks"][head]
            elif layer == 10 and head == 0:
                ccs, label = 0, "wild animals and pets"
            elif layer == 10 and head == 1:
                ccs, label = 1, "textures"
            elif layer == 10 and head == 5:
                ccs, label = 3, "objects"
            cat = "high" if ccs == 5 else "moderate" if ccs == 3 else "low" if ccs <= 1 else "other"
            rows.append({"model": MODEL, "layer": layer, "head": head, "label": label, "ccs": ccs, "category": cat})
    rows.append({"model": "other/model", "layer": 0, "head": 0, "label": "x", "ccs": 5, "category": "high"})
    return pl.DataFrame(rows)


def _by_condition(sets):
    return {(s.condition, s.seed): s for s in sets}


def test_category_sets_and_order():
    sets = build_head_sets(_ccs_table(), MODEL, 12, 12)
    assert sets[0].condition == "original" and sets[0].heads == ()
    by = _by_condition(sets)
    assert by[("high", None)].heads == ("L11.H0", "L11.H1", "L11.H2", "L11.H3")
    assert by[("low", None)].heads == ("L10.H0", "L10.H1")
    assert by[("moderate", None)].heads == ("L10.H5",)


def test_random_sets_sized_like_high_exclude_high_and_stay_in_scored_layers():
    table = _ccs_table()
    sets = build_head_sets(table, MODEL, 12, 12, HeadSetConfig(seeds=(0, 1, 2)))
    randoms = [s for s in sets if s.condition == "random"]
    high = set(_by_condition(sets)[("high", None)].heads)
    assert [s.seed for s in randoms] == [0, 1, 2]
    for s in randoms:
        assert s.n_pruned == 4 and not set(s.heads) & high
        assert all(h.startswith(("L10.", "L11.")) for h in s.heads)
    assert len({s.heads for s in randoms}) == 3  # different seeds, different draws
    again = build_head_sets(table, MODEL, 12, 12, HeadSetConfig(seeds=(0, 1, 2)))
    assert [s.heads for s in again if s.condition == "random"] == [s.heads for s in randoms]


def test_equal_count_sets():
    by = _by_condition(build_head_sets(_ccs_table(), MODEL, 12, 12))
    eh, el = by[("equal:high", None)], by[("equal:low", None)]
    assert eh.n_pruned == el.n_pruned == 2
    assert set(eh.heads) <= set(by[("high", None)].heads)
    assert set(el.heads) == {"L10.H0", "L10.H1"}


def test_concept_families_with_synonyms(tmp_path):
    cmap = load_concept_map()
    assert "location" in label_families("Geographic locations", cmap)
    assert "location" in label_families("city landmarks", cmap)
    assert label_families("Colors", cmap) == ("colour",)
    assert "animal" in label_families("wild animals and pets", cmap)
    assert label_families("misc", cmap) == ()
    by = _by_condition(build_head_sets(_ccs_table(), MODEL, 12, 12))
    assert by[("concept:location", None)].heads == ("L11.H0", "L11.H3")
    assert by[("concept:animal", None)].heads == ("L10.H0", "L11.H1")
    concept_map = tmp_path / "concepts.json"
    concept_map.write_text('{"place": ["city"]}')
    custom = HeadSetConfig(conditions=("concept",), concepts=("place",), concept_map=concept_map)
    sets = build_head_sets(_ccs_table(), MODEL, 12, 12, custom)
    assert [(s.condition, s.heads) for s in sets] == [("concept:place", ("L11.H3",))]


def test_explicit_lists():
    assert parse_explicit("locs=L10.H8, L11.H9") == ("locs", "L10.H8, L11.H9")
    assert parse_explicit("L11.H5,L10.H8") == ("L11.H5,L10.H8", "L11.H5,L10.H8")
    cfg = HeadSetConfig(conditions=("original",), heads=dict([parse_explicit("locs=L11.H9,L10.H8")]))
    sets = build_head_sets(None, MODEL, 12, 12, cfg)
    assert [(s.condition, s.heads) for s in sets] == [("original", ()), ("locs", ("L10.H8", "L11.H9"))]
    with pytest.raises(UserError, match="clashes"):
        parse_explicit("high=L1.H1")


def test_bad_inputs_are_one_line_user_errors():
    with pytest.raises(UserError, match="out of range"):
        build_head_sets(None, MODEL, 12, 12, HeadSetConfig(conditions=(), heads={"x": "L12.H0"}))
    with pytest.raises(UserError, match="no rows for model"):
        build_head_sets(_ccs_table(), "ViT-L-14/openai", 12, 12)
    with pytest.raises(UserError, match="need a ccs table"):
        build_head_sets(None, MODEL, 12, 12)
    with pytest.raises(UserError, match="out of range"):
        build_head_sets(_ccs_table(), MODEL, 11, 12)  # table has layer 11
    with pytest.raises(UserError, match="unknown condition"):
        HeadSetConfig(conditions=("hihg",))
    with pytest.raises(UserError, match="unknown concept family"):
        build_head_sets(_ccs_table(), MODEL, 12, 12, HeadSetConfig(conditions=("concept",), concepts=("nope",)))
    for err in (UserError("a\nb"),):
        assert "\n" not in str(err)


def test_category_falls_back_to_thresholds_without_category_column():
    table = _ccs_table().drop("category")
    by = _by_condition(build_head_sets(table, MODEL, 12, 12, HeadSetConfig(conditions=("high", "low", "moderate"))))
    assert by[("high", None)].n_pruned == 4 and by[("low", None)].n_pruned == 2 and by[("moderate", None)].n_pruned == 1


@pytest.fixture(scope="module")
def tiny():
    from ccs_dist.models import load_model

    return load_model("ccs-tiny")


def test_zeroed_heads_restores_weights_and_changes_output(tiny):
    w = tiny.model.visual.transformer.resblocks[2].attn.out_proj.weight
    before = w.detach().clone()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = tiny.model.encode_image(x)
        with zeroed_heads(tiny.model, ["L2.H1"]):
            k = w.shape[1] // 4
            assert torch.all(w[:, k : 2 * k] == 0) and torch.equal(w[:, :k], before[:, :k])
            pruned = tiny.model.encode_image(x)
    assert torch.equal(w, before)
    assert not torch.allclose(ref, pruned)


def test_naive_reference_matches_the_engine(tiny):
    import ccs_dist

    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    sets = [[], ["L2.H1"], ["L0.H0", "L2.H3"], ["L1.H0", "L1.H1", "L1.H2", "L1.H3"]]
    naive = encode_image_head_sets_naive(tiny, x, sets)
    with torch.no_grad():
        ours = ccs_dist.encode_image_head_sets(tiny, x, sets)
    assert (naive - ours).abs().max().item() <= 1e-4
    assert (naive[0] - naive[1]).abs().max().item() > 1e-4  # pruning changes something


def test_min_stability_keeps_unstable_heads_out_of_ccs_sets_but_not_random_pool():
    table = _ccs_table().with_columns(
        stability=pl.when((pl.col("layer") == 11) & (pl.col("head") == 0)).then(0.2)
        .when((pl.col("layer") == 10) & (pl.col("head") == 1)).then(None).otherwise(0.9))
    cfg = HeadSetConfig(conditions=("high", "low", "random"), seeds=(0,), min_stability=0.5)
    sets = {s.condition: s.heads for s in build_head_sets(table, MODEL, 12, 12, cfg)}
    assert sets["high"] == ("L11.H1", "L11.H2", "L11.H3")  # L11.H0 (stability 0.2) dropped
    assert sets["low"] == ("L10.H0",)  # L10.H1 has no stability: dropped too
    assert len(sets["random"]) == 3 and "L11.H0" in {h for s in build_head_sets(
        table, MODEL, 12, 12, HeadSetConfig(conditions=("random",), seeds=tuple(range(40)), min_stability=0.5)) for h in s.heads}
    without = {s.condition: s.heads for s in build_head_sets(table, MODEL, 12, 12, HeadSetConfig(conditions=("high",)))}
    assert len(without["high"]) == 4
    with pytest.raises(UserError, match="stability column"):
        build_head_sets(_ccs_table(), MODEL, 12, 12, cfg)
    with pytest.raises(UserError, match="min_stability=1.5"):
        HeadSetConfig(min_stability=1.5)


def test_paper_concept_sets_take_only_high_ccs_heads():
    table = _ccs_table()
    any_ = {s.condition: s.heads for s in build_head_sets(table, MODEL, 12, 12, HeadSetConfig(conditions=("concept",)))}
    high = {s.condition: s.heads for s in build_head_sets(table, MODEL, 12, 12, HeadSetConfig(conditions=("concept",), concept_heads="high"))}
    animal = next(c for c in any_ if "L11.H1" in any_[c] and "L10.H0" in any_[c])
    assert high[animal] == ("L11.H1",)  # the low-CCS "wild animals and pets" head is not pruned under the paper's rule


def test_random_layers_policy():
    table = _ccs_table()  # scored layers 10 and 11 of 12
    def layers_of(policy, model=MODEL):
        t = table if model == MODEL else table.filter(pl.col("model") == MODEL).with_columns(pl.lit(model).alias("model"))
        sets = build_head_sets(t, model, 12, 12, HeadSetConfig(conditions=("random",), seeds=tuple(range(30)), random_layers=policy))
        return {int(h.split(".")[0][1:]) for s in sets for h in s.heads}
    assert layers_of("scored") == {10, 11}
    assert len(layers_of("all")) > 6  # 30 draws of 4 heads from 140 land in many of the 12 layers
    assert len(layers_of("reference")) > 6  # ViT-B-32 OpenAI: the reference draws from every layer
    assert layers_of("reference", "ViT-B-16/openai") == {10, 11}
    with pytest.raises(UserError, match="random_layers"):
        HeadSetConfig(random_layers="some")


def test_random_sets_fall_back_to_every_head_when_most_heads_are_high(caplog):
    # 20 of the 24 scored heads high: only 4 others, so random sets of 20 draw from all 24 (and say so)
    table = _ccs_table().with_columns(
        pl.when((pl.col("model") == MODEL) & (pl.col("head") < 10)).then(pl.lit("high")).otherwise(pl.col("category")).alias("category"))
    sets = build_head_sets(table, MODEL, 12, 12, HeadSetConfig(conditions=("high", "random"), seeds=(0, 1)))
    by = _by_condition(sets)
    assert len(by[("high", None)].heads) == 20
    for seed in (0, 1):
        heads = by[("random", seed)].heads
        assert len(heads) == 20 and len(set(heads)) == 20
        assert all(h.split(".")[0] in ("L10", "L11") for h in heads)
    assert by[("random", 0)].heads != by[("random", 1)].heads
    assert "random sets are drawn from all 24 heads" in caplog.text
