"""``judge-check``: score any judge on the shipped gold pairs, no run needed."""

from __future__ import annotations

from pathlib import Path

from ccs_dist.artifacts.schemas import csv_safe
from ccs_dist.cli.score import score_config
from ccs_dist.core.errors import UserError
from ccs_dist.llm.config import ScoreConfig
from ccs_dist.llm.judge_check import check_judges


def _fmt(x: float) -> str:
    return "nan" if x != x else f"{x:.3f}"


def validation_lines(table, summary: dict) -> list[str]:
    """One line per judge: kappa [95 % interval], raw agreement, FPR and FNR on the gold pairs."""
    lines = []
    for r in table.iter_rows(named=True):
        lines.append(
            f"  {r['judge']}: kappa {_fmt(r['kappa'])} [{_fmt(r['kappa_lo'])}, {_fmt(r['kappa_hi'])}], raw agreement "
            f"{_fmt(r['raw_agreement'])} [{_fmt(r['raw_agreement_lo'])}, {_fmt(r['raw_agreement_hi'])}], false positives "
            f"{_fmt(r['fpr'])} (other factor {_fmt(r['fpr_other_factor'])}, off topic {_fmt(r['fpr_off_topic'])}), false "
            f"negatives {_fmt(r['fnr'])}; n {r['n']} ({r['n_failed']} failed)")
    return lines


def judge_check(
    self,
    llm: ScoreConfig,
    judges: str | None = None,
    cache_dir: str = "cache",
    no_cache: bool = False,
    refresh_cache: bool = False,
    out: str | None = None,
):
    """Score judges on the shipped gold pairs (description, label, fits by the toy world's construction): kappa, FPR, FNR.

    The flags are the score command's: --backend offline (--offline-judges / --offline-verdict ...) or an endpoint
    (--base-url, --model, --api-key-env, --judges); --judge-gold-pairs bounds the pairs sent (stratified, each one
    request per judge in pair mode, cached under CACHE_DIR/llm as a run's answers are).

    Args:
        judges: comma-separated judges as for `ccs-dist score` (default: the --model at --base-url, or minilm offline).
        cache_dir: cache root; answers go to CACHE_DIR/llm.
        no_cache: neither read nor write the cache.
        refresh_cache: ask again and overwrite cached answers.
        out: also write the judge_validation table to this CSV.
    """
    if llm.judge_gold_pairs < 1:
        raise UserError("judge-check needs --judge-gold-pairs >= 1 (the default sends all of them)")
    config = score_config(llm, judges=judges, cache_dir=cache_dir, no_cache=no_cache, refresh_cache=refresh_cache,
                          progress=False)
    table, s = check_judges(config)
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        csv_safe(table).write_csv(out)
    head = (f"judges on {s['gold_pairs']} gold pairs (gold {s['gold']}): requests {s['requests']}, cache hits {s['hits']}, "
            f"estimated cost ${s['cost_usd']:.4f}, {s['seconds']:.1f} s")
    return "\n".join([head, *validation_lines(table, s)])
