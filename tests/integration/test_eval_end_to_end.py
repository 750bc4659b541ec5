"""Every synthetic dataset evaluated end to end with ccs-tiny through the masked engine, and the CLI."""

import shutil

import polars as pl
import pytest

from tests.support.cli import run_cli
from ccs_dist.data import synthetic
from ccs_dist.evaluate import EvalConfig, evaluate
from ccs_dist.evaluate.run import ALL_TASKS
from ccs_dist.ccs.head_sets import HeadSet, encode_image_head_sets_naive



@pytest.fixture(scope="module")
def root(tmp_path_factory):
    r = tmp_path_factory.mktemp("evaldata")
    synthetic.write_all(r)
    synthetic.write_folder(r / "shapes")
    return r


@pytest.fixture(scope="module")
def tiny():
    from ccs_dist.models import load_model

    return load_model("ccs-tiny")


@pytest.fixture(scope="module")
def occupations():
    from ccs_dist.evaluate.bias import DEFAULT_OCCUPATIONS

    return DEFAULT_OCCUPATIONS  # the package's copy of the paper's list


HEAD_SETS = [HeadSet("original", ()), HeadSet("high", ("L2.H0", "L2.H1")), HeadSet("random", ("L1.H2", "L2.H3"), seed=0),
             HeadSet("random", ("L1.H0", "L2.H2"), seed=1), HeadSet("concept:location", ("L0.H1",))]


def _config(root, occupations, **kw):
    return EvalConfig(data_root=root, batch_size=16, occupations=occupations, k=5, templates_per_class=1, **kw)


def test_every_task_end_to_end(tiny, root, occupations):
    tasks = [t for t in ALL_TASKS if t != "folder"] + [f"folder@{root / 'shapes'}"]
    df = evaluate(tiny, tasks, HEAD_SETS, _config(root, occupations))
    assert df.columns == ["model", "task", "condition", "seed", "n_pruned", "metric", "value"]
    expected_tasks = {"cifar10", "cifar10animals", "cifar10objects", "cifar100", "food101", "country211", "oxford_pets", "imagenet", "imagenet_a", "imagenet_r",
                      "folder:shapes", "msrvtt", "msvd", "didemo", "fairface_race", "fairface_gender",
                      "socialcounterfactuals_race", "socialcounterfactuals_gender",
                      "toy-colour", "toy-shape", "toy-position", "toy-size", "toy-texture",
                      *(f"plant-{f}" for f in ("colour", "shape", "position", "size", "texture", "bgtone", "rim"))}
    assert set(df["task"].unique()) == expected_tasks
    conds = set(df["condition"].unique())
    assert conds == {"original", "high", "random", "concept:location", "random:mean", "random:std"}
    top1 = df.filter((pl.col("metric") == "top1"))
    assert top1["value"].is_between(0, 100).all()
    n = df.filter((pl.col("task") == "cifar10") & (pl.col("metric") == "n") & (pl.col("condition") != "random:std"))["value"].unique().to_list()
    assert n == [20.0]
    # mean/std rows summarise exactly the per-seed rows
    r = df.filter((pl.col("task") == "msvd") & (pl.col("metric") == "t2v_MeanR"))
    per_seed = r.filter(pl.col("condition") == "random").sort("seed")["value"].to_list()
    mean = r.filter(pl.col("condition") == "random:mean")["value"].item()
    assert mean == pytest.approx(sum(per_seed) / 2)
    assert r.filter(pl.col("condition") == "random")["seed"].to_list() == [0, 1]
    assert r.filter(pl.col("condition") == "random:mean")["seed"].to_list() == [None]
    skew = df.filter((pl.col("task") == "fairface_race") & (pl.col("metric") == "maxskew@5_sum"))
    assert skew.height == 5 + 2 and (skew["value"] >= 0).all()


def test_engine_results_equal_the_naive_way(tiny, root, occupations):
    cfg = _config(root, occupations)
    tasks = ["cifar100", "msvd", "fairface"]
    ours = evaluate(tiny, tasks, HEAD_SETS, cfg).sort("task", "condition", "seed", "metric")
    naive = evaluate(tiny, tasks, HEAD_SETS, cfg, encoder=encode_image_head_sets_naive).sort("task", "condition", "seed", "metric")
    assert ours.drop("value").equals(naive.drop("value"))
    assert (ours["value"] - naive["value"]).abs().max() < 1e-6


def test_pruning_changes_embeddings_not_just_labels(tiny, root, occupations):
    df = evaluate(tiny, ["fairface"], [HeadSet("original", ()), HeadSet("all", tuple(f"L{l}.H{h}" for l in range(3) for h in range(4)))],
                  _config(root, occupations))
    v = df.filter(pl.col("metric") == "ndkl@5_mean").sort("task", "condition")["value"].to_list()
    assert v[0] != v[1] or v[2] != v[3]


def test_unreadable_video_is_skipped_and_counted(tiny, root, occupations, tmp_path):
    shutil.copytree(root / "msrvtt", tmp_path / "msrvtt")
    (tmp_path / "msrvtt" / "videos" / "all" / "video7002.mp4").write_bytes(b"not a video at all")
    df = evaluate(tiny, ["msrvtt"], HEAD_SETS[:1], _config(tmp_path, occupations))
    get = lambda m: df.filter(pl.col("metric") == m)["value"].item()  # noqa: E731
    assert get("videos_skipped") == 1.0 and get("videos") == 3.0


def test_limit_takes_an_even_subset(tiny, root, occupations):
    df = evaluate(tiny, ["cifar100"], HEAD_SETS[:1], _config(root, occupations, limit=7))
    assert df.filter(pl.col("metric") == "n")["value"].item() == 7.0


def test_cli_writes_the_table_and_reports_bad_input(root, occupations, tmp_path):
    ccs = tmp_path / "ccs.parquet"
    rows = [{"model": "ccs-tiny/random-init", "layer": l, "head": h, "label": "cities" if h == 0 else "animals",
             "ccs": 5 if h < 2 else (0 if h == 3 else 3), "category": "high" if h < 2 else ("low" if h == 3 else "moderate")}
            for l in (1, 2) for h in range(4)]
    pl.DataFrame(rows).write_parquet(ccs)
    out = tmp_path / "run"
    proc = run_cli("evaluate", "--model", "ccs-tiny", "--tasks", "cifar10,msvd", "--data_root", str(root), "--ccs", str(ccs),
                   "--heads", "mine=L0.H1,L1.H1", "--out", str(out), "--templates_per_class", "1", "--batch_size", "16")
    assert proc.returncode == 0, proc.stderr[-3000:]
    df = pl.read_parquet(out / "tables" / "evaluation.parquet")
    conds = set(df["condition"].unique())
    assert {"original", "high", "low", "moderate", "random", "random:mean", "random:std", "equal:high", "equal:low",
            "concept:location", "concept:animal", "mine"} == conds
    assert df.filter(pl.col("condition") == "high")["n_pruned"].unique().to_list() == [4]
    assert sorted(df.filter(pl.col("condition") == "random")["seed"].unique().to_list()) == [0, 1, 2]
    proc = run_cli("evaluate", "--model", "ccs-tiny", "--tasks", "cifar10", "--data_root", str(tmp_path / "none"), "--out", str(out))
    assert proc.returncode == 2
    err = proc.stderr.strip().splitlines()[-1]
    assert err.startswith("error: cifar10: dataset not found") and "expected layout" in err
    proc = run_cli("evaluate", "--model", "ccs-tiny", "--tasks", "cifar10", "--heads", "L9.H0", "--data_root", str(root),
                   "--out", str(out))
    assert proc.returncode == 2 and "out of range" in proc.stderr


def test_mean_ablation_runs_on_image_tasks_only(tiny, root, occupations):
    zero = evaluate(tiny, ["cifar100"], HEAD_SETS[:2], _config(root, occupations))
    mean = evaluate(tiny, ["cifar100"], HEAD_SETS[:2], _config(root, occupations, ablation="mean"))
    pick = lambda df, c: df.filter((pl.col("condition") == c) & (pl.col("metric") == "top1"))["value"].item()  # noqa: E731
    assert pick(zero, "original") == pick(mean, "original")
    from ccs_dist.core.errors import UserError

    with pytest.raises(UserError, match="image tasks only"):
        evaluate(tiny, ["msvd"], HEAD_SETS[:2], _config(root, occupations, ablation="mean"))
