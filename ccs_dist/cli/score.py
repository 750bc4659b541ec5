"""``score`` and ``agreement``: label and judge every head's spans (CCS); agreement between sets of verdicts."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import polars as pl

from ccs_dist.cli.options import table_in, terminal
from ccs_dist.core.errors import UserError
from ccs_dist.llm.config import DEFAULT_KEY_ENV, SCORINGS, EndpointConfig, ScoreConfig
from ccs_dist.artifacts.schemas import csv_safe, csv_unescape

log = logging.getLogger(__name__)

_ENDPOINT = EndpointConfig()  # the LLM defaults' one home is the library's config
DEFAULT_BASE_URL = _ENDPOINT.base_url


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
    from ccs_dist.llm.urls import redact_url, same_endpoint

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


def build_score_config(
    *, backend, base_url, llm_model, judges, judge_mode, cache_dir, no_cache, refresh_cache, api_key_env, rpm, tpm,
    concurrency, timeout, max_attempts, price_in, price_out, embedder, threshold, progress,
    max_description_chars=ScoreConfig.max_description_chars, scoring="normalised",
) -> ScoreConfig:
    if backend not in ("openai", "offline"):
        raise UserError(f"unknown --backend {backend!r}: use openai or offline")
    if judge_mode not in ("pair", "head"):
        raise UserError(f"unknown --judge-mode {judge_mode!r}: use pair (one request per description) or head")
    if scoring not in SCORINGS:
        raise UserError(f"unknown --scoring {scoring!r}: use {' or '.join(SCORINGS)}")
    if no_cache and refresh_cache:
        raise UserError("--no-cache and --refresh-cache exclude each other: pass one")
    for name, v in (("--rpm", rpm), ("--tpm", tpm), ("--concurrency", concurrency), ("--timeout", timeout),
                    ("--max-attempts", max_attempts), ("--max-description-chars", max_description_chars)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0:
            raise UserError(f"{name} must be a positive number, got {v!r}")
    if not api_key_env or not _ENV_NAME.match(str(api_key_env)):
        raise UserError(f"--api-key-env {api_key_env!r} is not an environment variable name: pass e.g. OPENAI_API_KEY")
    base_url = base_url or DEFAULT_BASE_URL

    def endpoint(model: str, url: str, key_env: str | None) -> EndpointConfig:
        return EndpointConfig(
            model=model, base_url=url, api_key_env=key_env, rpm=float(rpm), tpm=float(tpm),
            max_concurrency=int(concurrency), timeout_s=float(timeout), max_attempts=int(max_attempts),
            price_in_per_mtok=float(price_in), price_out_per_mtok=float(price_out),
        )

    judge_list = parse_judges(judges, llm_model, base_url, backend, api_key_env)
    offline_judges: tuple[str, ...] = ()
    if backend == "offline":
        offline_judges = tuple(m if not u or u == base_url else f"{m}@{u}" for m, u, _ in judge_list)
        bad = [j for j in offline_judges if not (j == "minilm" or j.startswith("clip:"))]
        if bad:
            raise UserError(f"invalid judge list for the offline backend: {bad}: use minilm or clip:ARCH[/PRETRAINED]")
    return ScoreConfig(
        backend=backend,
        labeler=endpoint(llm_model, base_url, api_key_env),
        judges=tuple(endpoint(m, u, k) for m, u, k in judge_list) if backend != "offline" else (),
        judge_mode=judge_mode,
        cache="bypass" if no_cache else "refresh" if refresh_cache else "use",
        cache_dir=str(cache_dir),
        offline_embedder=embedder,
        offline_threshold=None if threshold is None else float(threshold),
        offline_scoring=scoring,
        offline_judges=offline_judges,
        max_description_chars=int(max_description_chars),
        show_progress=bool(progress),
    )


def score(
    self,
    spans: str = "",
    out: str = "",
    backend: str = "openai",
    base_url: str | None = None,
    llm_model: str = _ENDPOINT.model,
    judges: str | None = None,
    judge_mode: str = "pair",
    cache_dir: str = "cache",
    no_cache: bool = False,
    refresh_cache: bool = False,
    api_key_env: str = DEFAULT_KEY_ENV,
    rpm: float = _ENDPOINT.rpm,
    tpm: float = _ENDPOINT.tpm,
    concurrency: int = _ENDPOINT.max_concurrency,
    timeout: float = _ENDPOINT.timeout_s,
    max_attempts: int = _ENDPOINT.max_attempts,
    price_in: float = _ENDPOINT.price_in_per_mtok,
    price_out: float = _ENDPOINT.price_out_per_mtok,
    embedder: str = "minilm",
    threshold: float | None = None,
    scoring: str = "normalised",
    progress: bool = True,
    max_description_chars: int = ScoreConfig.max_description_chars,
):
    """Label every head's spans, judge each (description, label), write labels/judgments/ccs/ccs_at_k parquet.

    Args:
        spans: spans table (parquet: model, layer, head, rank, text, variance) from the textspan stage, or the
            run directory that holds it (RUN/tables/spans.parquet).
        out: the run directory: writes OUT/tables/{labels,judgments,ccs,ccs_at_k}.parquet and OUT/tables/score_meta.json.
        backend: openai (any OpenAI-compatible endpoint) or offline (local embedder, no network, no key).
        base_url: endpoint base URL, e.g. http://127.0.0.1:8000/v1 for vLLM/Ollama (default https://api.openai.com/v1).
        llm_model: model that labels the heads (and judges when --judges is not given).
        judges: comma-separated judges, each MODEL, MODEL@BASE_URL or MODEL@BASE_URL#KEY_ENV (majority vote; every verdict
            kept). The --api-key-env key goes only to --base-url; a judge elsewhere gets the key in its KEY_ENV, or none.
            Offline: minilm or clip:ARCH[/PRETRAINED].
        judge_mode: pair (one request per description, the paper's protocol) or head (one request per head, five verdicts as JSON).
        cache_dir: cache root; LLM answers go to CACHE_DIR/llm (shared safely by concurrent runs).
        no_cache: neither read nor write the cache.
        refresh_cache: ask again and overwrite cached answers.
        api_key_env: name of the environment variable holding the API key (its value is never written anywhere).
        rpm: requests per minute allowed per endpoint (tightened by the server's x-ratelimit headers).
        tpm: tokens per minute allowed per endpoint.
        concurrency: most requests in flight per endpoint.
        timeout: seconds one attempt may take, connect to last byte, before it is retried (a request ends within
            max_attempts x (timeout + backoff)).
        max_attempts: attempts per request (429, 5xx, timeouts, dropped connections) before the stage stops.
        price_in: USD per million prompt tokens, for the cost estimate.
        price_out: USD per million completion tokens, for the cost estimate.
        embedder: offline labeler embedder: minilm or clip:ARCH[/PRETRAINED].
        threshold: offline judge threshold in --scoring's units (default: calibrated on the default pool's family tags).
        scoring: offline score of a description for a concept: normalised (cosine less the description's mean over the
            concept vocabulary, over its spread, less the concept's mean pull on the default pool) or cosine (earlier releases).
        progress: show a progress bar (--progress=False or --noprogress to hide it).
        max_description_chars: descriptions longer than this are cut to it (with a warning) before they are sent.
    """
    from ccs_dist.core.errors import check_dir_arg
    from ccs_dist.llm.score import read_spans
    from ccs_dist.stages.chain import llm_cache_dir
    from ccs_dist.stages.score import score_stage
    from ccs_dist.artifacts.storage import check_root

    if not spans or not out:
        raise UserError("score needs --spans SPANS.parquet (or a run directory) and --out DIR")
    check_dir_arg("--out", out)  # before any request is paid for
    check_root("--cache-dir", str(cache_dir))
    config = build_score_config(
        backend=backend, base_url=base_url, llm_model=llm_model, judges=judges, judge_mode=judge_mode,
        cache_dir=str(llm_cache_dir(str(cache_dir))), no_cache=no_cache, refresh_cache=refresh_cache, api_key_env=api_key_env,
        rpm=rpm, tpm=tpm, concurrency=concurrency, timeout=timeout, max_attempts=max_attempts, price_in=price_in,
        price_out=price_out, embedder=embedder, threshold=threshold, progress=bool(progress) and terminal(),
        max_description_chars=max_description_chars, scoring=scoring,
    )
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
    from ccs_dist.ccs.scores import majority_verdicts

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
    from ccs_dist.ccs.scores import agreement_report

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
