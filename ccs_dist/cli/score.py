"""``score``: label and judge every head's spans (CCS)."""

from __future__ import annotations

import logging
import re
from dataclasses import replace

from ccs_dist.cli.options import table_in, terminal
from ccs_dist.core.errors import UserError
from ccs_dist.llm.config import ScoreConfig
from ccs_dist.llm.urls import redact_url, same_endpoint
from ccs_dist.stages.chain import llm_cache_dir
from ccs_dist.core.errors import check_dir_arg
from ccs_dist.llm.score import read_spans
from ccs_dist.stages.score import score_stage
from ccs_dist.artifacts.storage import check_root
from ccs_dist.artifacts.run_dir import RunDir

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
    paths = result.write(RunDir(out).tables_dir)
    s = result.stats
    flagged = ""
    if s["flagged_heads"]:
        names = ", ".join(f["head"] for f in s["flagged"][:8]) + (", ..." if len(s["flagged"]) > 8 else "")
        flagged = f", {s['flagged_heads']} flagged (failed verdicts, left out of CCS@K: {names}; reasons in score_meta.json)"
    if s.get("cache_bad_entries"):
        flagged += f"; {s['cache_bad_entries']} unusable cache entries were asked again"
    v = s.get("judge_validation") or {}
    judged = "; ".join(f"{name} kappa {j['kappa']:.3f} [{j['kappa_lo']:.3f}, {j['kappa_hi']:.3f}] on {j['n']} gold pairs"
                       for name, j in (v.get("judges") or {}).items()) if v.get("validated") else "JUDGE NOT VALIDATED on the gold pairs"
    return (
        f"scored {s['heads']} heads{flagged}; cache hits {s['hits']}, misses {s['misses']}, requests {s['requests']}, "
        f"tokens in/out {s['tokens_in']}/{s['tokens_out']}, estimated cost ${s['cost_usd']:.4f}; tables in {paths['ccs'].parent}\n"
        f"judges: {judged}"
    )


# the flags' spellings before they were the spec's names
score.flag_aliases = {"--llm-model": "--model", "--concurrency": "--max-concurrency", "--timeout": "--timeout-s",
                      "--price-in": "--price-in-per-mtok", "--price-out": "--price-out-per-mtok",
                      "--embedder": "--offline-embedder", "--threshold": "--offline-threshold", "--scoring": "--offline-scoring"}
