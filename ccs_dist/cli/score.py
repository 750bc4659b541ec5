"""``score`` and ``agreement``: label and judge every head's spans (CCS); agreement between sets of verdicts."""

from __future__ import annotations

import logging
import re
from dataclasses import replace
from pathlib import Path

import polars as pl

from ccs_dist.cli.options import table_in, terminal
from ccs_dist.core.errors import UserError
from ccs_dist.llm.config import ScoreConfig
from ccs_dist.artifacts.schemas import csv_safe, csv_unescape
from ccs_dist.llm.urls import redact_url, same_endpoint
from ccs_dist.stages.chain import llm_cache_dir
from ccs_dist.core.errors import check_dir_arg
from ccs_dist.llm.score import read_spans
from ccs_dist.stages.score import score_stage
from ccs_dist.artifacts.storage import check_root
from ccs_dist.ccs.scores import majority_verdicts
from ccs_dist.ccs.scores import agreement_report

log = logging.getLogger(__name__)

def _split_list(value) -> list[str]:
    """fire hands ``a,b`` as a str and ``[a,b]`` or ``1,2`` as a tuple/list."""
    if value is None:
        return []
    items = value.split(",") if isinstance(value, str) else [str(v) for v in value]
    return [i.strip() for i in items]


_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def parse_judges(value, default_model: str, default_base_url: str, backend: str,
                 default_key_env: str | None = "OPENAI_API_KEY") -> list[tuple[str, str, str | None]]:
    """``MODEL[@BASE_URL][#KEY_ENV],...`` -> [(model, base_url, key env or None)].

    The default key (``default_key_env``) goes only to ``default_base_url``: a judge at another URL gets
    the key of its own ``#KEY_ENV``, or none. A UserError for an empty, malformed or repeated entry.
    """
    items = _split_list(value)
    if not items:
        return [] if backend == "offline" else [(default_model, default_base_url, default_key_env)]
    shown = ",".join(f"{i.partition('@')[0]}@{redact_url(i.partition('@')[2])}" if "@" in i else i for i in items)
    out = []
    for item in items:
        head, hashed, env = item.partition("#")
        model, at, url = head.partition("@")
        model, url, env = model.strip(), url.strip(), env.strip()
        if not model or (at and not url) or (hashed and not _ENV_NAME.match(env)):
            raise UserError(f"invalid judge list {shown!r}: give comma-separated MODEL, MODEL@BASE_URL or MODEL@BASE_URL#KEY_ENV "
                            "entries (KEY_ENV: the name of an environment variable), none empty")
        url = url or default_base_url
        if hashed:
            key_env = env
        elif same_endpoint(url, default_base_url):
            key_env = default_key_env
        else:
            key_env = None
            if backend != "offline":
                log.info("judge %s@%s gets no API key (the --api-key-env key goes only to --base-url): write "
                         "%s@URL#KEY_ENV to send the key held in KEY_ENV", model, redact_url(url), model)
        out.append((model, url, key_env))
    if len({(m, u) for m, u, _ in out}) != len(out):
        raise UserError(f"invalid judge list {shown!r}: a judge is named twice")
    return out


def score_config(llm: ScoreConfig, *, judges: str | None = None, cache_dir: str = "cache", no_cache: bool = False,
                 refresh_cache: bool = False, progress: bool = True) -> ScoreConfig:
    """The score command's config: its ``llm`` flags (the spec's ``llm`` section, the labeler's endpoint fields
    unprefixed) completed with the judges (``--judges``: each at the labeler's rates), the answer cache
    (``CACHE_DIR/llm``) and progress."""
    if no_cache and refresh_cache:
        raise UserError("--no-cache and --refresh-cache exclude each other: pass one")
    labeler = llm.labeler
    if labeler.api_key_env is None and llm.backend != "offline":
        raise UserError(f"--api-key-env {labeler.api_key_env!r} is not an environment variable name: pass e.g. OPENAI_API_KEY")
    judge_list = parse_judges(judges, labeler.model, labeler.base_url, llm.backend, labeler.api_key_env)
    changes: dict = {}
    if llm.backend == "offline":
        if judges:
            offline_judges = tuple(m if not u or u == labeler.base_url else f"{m}@{u}" for m, u, _ in judge_list)
            bad = [j for j in offline_judges if not (j == "minilm" or j.startswith("clip:"))]
            if bad:
                raise UserError(f"invalid judge list for the offline backend: {bad}: use minilm or clip:ARCH[/PRETRAINED]")
            changes["offline_judges"] = offline_judges
        changes["judges"] = ()
    else:
        changes["judges"] = tuple(replace(labeler, model=m, base_url=u, api_key_env=k) for m, u, k in judge_list)
    cache = "bypass" if no_cache else "refresh" if refresh_cache else llm.cache
    return replace(llm, **changes, cache=cache, cache_dir=str(llm_cache_dir(str(cache_dir))), show_progress=bool(progress))


def score(
    self,
    llm: ScoreConfig,
    spans: str = "",
    out: str = "",
    judges: str | None = None,
    cache_dir: str = "cache",
    no_cache: bool = False,
    refresh_cache: bool = False,
    progress: bool = True,
):
    """Label every head's spans, judge each (description, label), write labels/judgments/ccs/ccs_at_k parquet.

    The flags --backend ... --label-prompt are the job spec's llm section (the labeler's endpoint fields
    --model ... --price-out-per-mtok unprefixed; every judge of --judges gets the same rates).

    Args:
        spans: spans table (parquet: model, layer, head, rank, text, variance) from the textspan stage, or the
            run directory that holds it (RUN/tables/spans.parquet).
        out: the run directory: writes OUT/tables/{labels,judgments,ccs,ccs_at_k}.parquet and OUT/tables/score_meta.json.
        judges: comma-separated judges, each MODEL, MODEL@BASE_URL or MODEL@BASE_URL#KEY_ENV (majority vote; every verdict
            kept; default: the labeler's model). The --api-key-env key goes only to --base-url; a judge elsewhere gets
            the key in its KEY_ENV, or none. Offline: minilm or clip:ARCH[/PRETRAINED].
        cache_dir: cache root; LLM answers go to CACHE_DIR/llm (shared safely by concurrent runs).
        no_cache: neither read nor write the cache (--cache bypass).
        refresh_cache: ask again and overwrite cached answers (--cache refresh).
        progress: show a progress bar (--no-progress to hide it).
    """
    if not spans or not out:
        raise UserError("score needs --spans SPANS.parquet (or a run directory) and --out DIR")
    check_dir_arg("--out", out)  # before any request is paid for
    check_root("--cache-dir", str(cache_dir))
    config = score_config(llm, judges=judges, cache_dir=cache_dir, no_cache=no_cache, refresh_cache=refresh_cache,
                          progress=bool(progress) and terminal())
    result = score_stage(read_spans(table_in(spans, "spans")), config)
    paths = result.write(str(Path(out) / "tables"))
    s = result.stats
    flagged = ""
    if s["flagged_heads"]:
        names = ", ".join(f["head"] for f in s["flagged"][:8]) + (", ..." if len(s["flagged"]) > 8 else "")
        flagged = f", {s['flagged_heads']} flagged (failed verdicts, left out of CCS@K: {names}; reasons in score_meta.json)"
    if s.get("cache_bad_entries"):
        flagged += f"; {s['cache_bad_entries']} unusable cache entries were asked again"
    return (
        f"scored {s['heads']} heads{flagged}; cache hits {s['hits']}, misses {s['misses']}, requests {s['requests']}, "
        f"tokens in/out {s['tokens_in']}/{s['tokens_out']}, estimated cost ${s['cost_usd']:.4f}; tables in {paths['ccs'].parent}"
    )


# the flags' spellings before they were the spec's names
score.flag_aliases = {"--llm-model": "--model", "--concurrency": "--max-concurrency", "--timeout": "--timeout-s",
                      "--price-in": "--price-in-per-mtok", "--price-out": "--price-out-per-mtok",
                      "--embedder": "--offline-embedder", "--threshold": "--offline-threshold", "--scoring": "--offline-scoring"}


# -- agreement ---------------------------------------------------------------------------------------

_KEY = ["model", "layer", "head", "rank", "text", "label"]


def _read_judgments(path: str) -> pl.DataFrame:
    p = Path(path)
    if p.is_dir():
        p = p / "judgments.parquet"
    if not p.is_file():
        raise UserError(f"judgments table {p} does not exist: pass the judgments.parquet written by `ccs-dist score`")
    try:
        df = pl.read_parquet(p)
    except Exception as e:
        raise UserError(f"cannot read {p} as parquet ({type(e).__name__}): pass a judgments table") from e
    missing = [c for c in _KEY + ["aligned", "judge"] if c not in df.columns]
    if missing:
        raise UserError(f"judgments table {p} lacks column(s) {', '.join(missing)}: pass the table written by `ccs-dist score`")
    return df


_TRUE = {"1", "true", "yes", "y"}
_FALSE = {"0", "false", "no", "n"}


def _read_human(path: str) -> pl.DataFrame:
    p = Path(path)
    if not p.is_file():
        raise UserError(f"human verdict file {p} does not exist: export a sample with --export and annotate its aligned column")
    try:
        df = pl.read_csv(p, infer_schema_length=0)  # all strings: we parse the verdicts ourselves
    except Exception as e:
        raise UserError(f"cannot read {p} as CSV ({type(e).__name__}): pass a CSV with columns {', '.join(_KEY)}, aligned") from e
    df = csv_unescape(df)  # the exported sample's text cells may carry a spreadsheet-safety quote
    missing = [c for c in _KEY + ["aligned"] if c not in df.columns]
    if missing:
        raise UserError(f"human verdict file {p} lacks column(s) {', '.join(missing)}: keep the columns of the exported sample")
    v = df["aligned"].fill_null("").str.strip_chars().str.to_lowercase()
    bad = [x for x in v.to_list() if x and x not in _TRUE | _FALSE]
    if bad:
        raise UserError(f"human verdict file {p} has aligned value {bad[0]!r}: use 1/0 (or yes/no, true/false), blank for not annotated")
    df = df.with_columns(
        pl.col("layer").cast(pl.Int64), pl.col("head").cast(pl.Int64), pl.col("rank").cast(pl.Int64),
        aligned=pl.Series([True if x in _TRUE else False if x in _FALSE else None for x in v.to_list()], dtype=pl.Boolean),
    )
    n_blank = df["aligned"].null_count()
    if n_blank:
        log.info("%s: %d rows not annotated (blank aligned) are left out", p, n_blank)
    return df.drop_nulls("aligned").select(_KEY + ["aligned"])


def _verdicts_of(judgments: pl.DataFrame, judge: str | None) -> pl.DataFrame:
    if judge is None:
        return majority_verdicts(judgments).select(_KEY + ["aligned"])
    names = sorted(judgments["judge"].unique().to_list())
    if judge not in names:
        raise UserError(f"judge {judge!r} is not in the judgments table: choose one of {', '.join(names)}")
    return judgments.filter(pl.col("judge") == judge).select(_KEY + ["aligned"])


def _agreement(
    judgments: str, human: str | None = None, judge_a: str | None = None, judge_b: str | None = None,
    export: str | None = None, n: int = 100, seed: int = 0, out: str | None = None,
) -> str:
    if not judgments:
        raise UserError("agreement needs --judgments PATH (the judgments.parquet written by `ccs-dist score`)")
    table = _read_judgments(judgments)
    if export is not None:
        if not isinstance(n, int) or n <= 0:
            raise UserError(f"--n must be a positive integer, got {n!r}")
        pool = _verdicts_of(table, None).drop_nulls("aligned")
        sample = pool.sample(n=min(n, pool.height), seed=int(seed), shuffle=True).select(_KEY)
        sample = sample.with_columns(aligned=pl.lit(None, dtype=pl.String))
        Path(export).parent.mkdir(parents=True, exist_ok=True)
        csv_safe(sample).write_csv(export)
        return f"wrote {sample.height} (description, label) pairs to {export}: fill its aligned column with 1 or 0"
    if human is not None:
        a, b, what = _verdicts_of(table, judge_a), _read_human(human), f"{judge_a or 'judges (majority)'} vs human"
    elif judge_a is not None and judge_b is not None:
        if judge_a == judge_b:
            raise UserError("--judge-a and --judge-b name the same judge: compare two different judges")
        a, b, what = _verdicts_of(table, judge_a), _verdicts_of(table, judge_b), f"{judge_a} vs {judge_b}"
    else:
        raise UserError("agreement needs --human CSV, or --judge-a and --judge-b, or --export CSV")
    pairs = (
        a.rename({"aligned": "a"}).join(b.rename({"aligned": "b"}), on=_KEY, how="inner").drop_nulls(["a", "b"])
    )
    if pairs.height == 0:
        raise UserError("no (description, label) pair has a verdict on both sides: check that both come from the same run")
    report = agreement_report(pairs).with_columns(pl.lit(what).alias("comparison"))
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        csv_safe(report).write_csv(out)
    lines = [f"agreement, {what}:"]
    for r in report.iter_rows(named=True):
        lines.append(
            f"  {r['level']:<8} n={r['n']:<5} raw={r['raw_agreement']:.3f} kappa={r['cohen_kappa']:.3f} "
            f"spearman={r['spearman_rho']:.3f} kendall={r['kendall_tau']:.3f}"
        )
    return "\n".join(lines)


def agreement(
    self,
    judgments: str = "",
    human: str | None = None,
    judge_a: str | None = None,
    judge_b: str | None = None,
    export: str | None = None,
    n: int = 100,
    seed: int = 0,
    out: str | None = None,
):
    """Agreement (Cohen's kappa, Spearman's rho, Kendall's tau) between two sets of 0/1 verdicts, or export a sample to annotate.

    Args:
        judgments: judgments.parquet written by `ccs-dist score`, or the run directory that holds it.
        human: CSV of human verdicts (columns model, layer, head, rank, text, label, aligned as 1/0; blank = not annotated), compared with --judge-a or the judges' majority.
        judge_a: a judge name from the judgments table (model@host); alone with --human, or with --judge-b.
        judge_b: a second judge to compare with --judge-a.
        export: write a random sample of (description, label) pairs to this CSV for people to annotate.
        n: number of pairs to export.
        seed: random seed of the exported sample.
        out: also write the agreement table to this CSV.
    """
    return _agreement(table_in(judgments, "judgments") if judgments else judgments, human=human, judge_a=judge_a,
                      judge_b=judge_b, export=export, n=n, seed=seed, out=out)
