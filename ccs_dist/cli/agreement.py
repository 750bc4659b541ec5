"""``agreement`` and ``annotate``: agreement between sets of 0/1 verdicts (judges, annotators), and the annotation
round trip (a stratified sample out as CSV and a static HTML page, the filled CSV back in as per-judge agreement with
intervals). One home: ``agreement --export`` and ``annotate`` write the same sample."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import polars as pl

from ccs_dist.artifacts.schemas import csv_safe, csv_unescape
from ccs_dist.artifacts.run_dir import table_file
from ccs_dist.cli.options import table_in
from ccs_dist.core.errors import UserError
from ccs_dist.ccs.scores import majority_verdicts
from ccs_dist.ccs.scores import agreement_report
from ccs_dist.report.annotation_page import annotation_page
from ccs_dist.ccs.verdict_stats import calibration_curve, verdict_agreement

log = logging.getLogger(__name__)

_KEY = ["model", "layer", "head", "rank", "text", "label"]


def _read_judgments(path: str) -> pl.DataFrame:
    p = Path(path)
    if p.is_dir():
        p = p / table_file("judgments")
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
        return export_pairs(table, Path(export), n, int(seed))
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
        export: write a stratified sample of (description, label) pairs to this CSV (and a page to fill in, .html) to annotate.
        n: number of pairs to export.
        seed: random seed of the exported sample.
        out: also write the agreement table to this CSV.
    """
    return _agreement(table_in(judgments, "judgments") if judgments else judgments, human=human, judge_a=judge_a,
                      judge_b=judge_b, export=export, n=n, seed=seed, out=out)


# -- annotate ----------------------------------------------------------------------------------------


def stratified_sample(pool: pl.DataFrame, n: int, seed: int) -> pl.DataFrame:
    """At most ``n`` rows of ``pool`` (one per (description, label)), stratified by model and the judges' majority
    verdict: the strata take turns, each shuffled with ``seed``, so "fits" and "does not fit" are both well represented."""
    rng = np.random.default_rng(seed)
    strata = [g for _, g in sorted(pool.group_by(["model", "aligned"]), key=lambda kv: (kv[0][0], bool(kv[0][1])))]
    order = [list(rng.permutation(g.height)) for g in strata]
    picked: list[pl.DataFrame] = []
    turn = 0
    while len(picked) < n and any(order):
        i = turn % len(strata)
        if order[i]:
            picked.append(strata[i][int(order[i].pop())])
        turn += 1
    return pl.concat(picked).sort(_KEY[:4]) if picked else pool.clear()


def export_pairs(table: pl.DataFrame, csv_path: Path, n: int, seed: int) -> str:
    """Write the sample to annotate as ``csv_path`` (the judges' verdicts left out: ``aligned`` blank) and the same rows
    as a static page ``csv_path`` with suffix .html."""
    if not isinstance(n, int) or isinstance(n, bool) or n <= 0:
        raise UserError(f"--n must be a positive integer, got {n!r}")
    pool = _verdicts_of(table, None).drop_nulls("aligned")
    if pool.height == 0:
        raise UserError("the judgments table has no valid verdict to sample from: score the run first")
    sample = stratified_sample(pool, n, seed).select(_KEY).with_columns(aligned=pl.lit(None, dtype=pl.String))
    try:
        csv_path.parent.mkdir(parents=True, exist_ok=True)
        csv_safe(sample).write_csv(csv_path)
        page = csv_path.with_suffix(".html")
        page.write_text(annotation_page(sample.to_dicts(), sample.columns, csv_path.name), encoding="utf-8")
    except OSError as e:
        raise UserError(f"cannot write {csv_path} ({e.strerror}): pass a writable --export path") from None
    return (f"wrote {sample.height} (description, label) pairs to {csv_path} and {page} (open it in a browser, no network "
            "needed): fill the aligned column with 1 or 0 (or use the page's buttons), then run ccs-dist annotate --import FILE")


def _fmt(x) -> str:
    return "nan" if x is None or x != x else f"{x:.3f}"


def import_annotations(table: pl.DataFrame, filled: str, seed: int = 0) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(per judge: agreement of its verdicts with the annotator's, with intervals, FPR and FNR; calibration rows of the
    judges whose verdicts carry a ``probability``, with their ECE)."""
    human = _read_human(filled).rename({"aligned": "truth"})
    judges = sorted(table["judge"].unique().to_list())
    rows, curves = [], []
    for name in [*judges, None]:
        v = _verdicts_of(table, name) if name is not None else _verdicts_of(table, None)
        pairs = human.join(v, on=_KEY, how="inner").drop_nulls(["truth", "aligned"])
        if pairs.height == 0:
            raise UserError(f"no annotated pair of {filled} is in the judgments table: annotate the sample exported from this run")
        rows.append({"judge": name or "judges (majority)",
                     **verdict_agreement(pairs["truth"].to_numpy(), pairs["aligned"].to_numpy(), seed=seed)})
        if name is not None and "probability" in table.columns:
            probs = table.filter(pl.col("judge") == name).select(_KEY + ["probability"]).drop_nulls("probability")
            joined = human.join(probs, on=_KEY, how="inner")
            if joined.height:
                bins, ece = calibration_curve(joined["truth"].to_numpy(), joined["probability"].to_numpy())
                curves += [{"judge": name, **b, "ece": ece} for b in bins]
    return pl.DataFrame(rows), pl.DataFrame(curves) if curves else pl.DataFrame()


def annotate(
    self,
    judgments: str = "",
    export: str | None = None,
    filled: str | None = None,
    n: int = 100,
    seed: int = 0,
    out: str | None = None,
):
    """Export a stratified sample of a run's (description, label) pairs to annotate (CSV + static HTML page), or import the filled CSV.

    Import gives, per judge and for the judges' majority: Cohen's kappa and raw agreement with 95 % intervals, false-positive
    and false-negative rates against the annotator; and, for judges whose verdicts carry a probability (a judgments
    column ``probability``, e.g. from an endpoint's log-probabilities), a calibration curve and ECE. The offline judge's
    verdicts carry none: its score mapped to [0, 1] would order pairs, it is not a probability.

    Args:
        judgments: judgments.parquet written by `ccs-dist score`, or the run directory that holds it.
        export: write the sample to this CSV, and the same pairs as a page to fill in beside it (.html).
        filled: (--import) the annotated CSV (the exported one, aligned filled with 1/0; blank = not annotated).
        n: number of pairs to export (stratified by model and the judges' verdict).
        seed: random seed of the sample and of the kappa bootstrap.
        out: with --import, also write the agreement table to this CSV (and the calibration table beside it).
    """
    if not judgments:
        raise UserError("annotate needs --judgments PATH (the judgments.parquet written by `ccs-dist score`, or the run)")
    table = _read_judgments(table_in(judgments, "judgments"))
    if (export is None) == (filled is None):
        raise UserError("annotate needs exactly one of --export CSV (write a sample) and --import FILLED.csv (read it back)")
    if export is not None:
        return export_pairs(table, Path(export), n, int(seed))
    report, curves = import_annotations(table, str(filled), int(seed))
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        csv_safe(report).write_csv(out)
        if curves.height:
            csv_safe(curves).write_csv(Path(out).with_name(Path(out).stem + "_calibration.csv"))
    lines = [f"agreement with the annotator ({filled}):"]
    for r in report.iter_rows(named=True):
        lines.append(f"  {r['judge']}: n {r['n']}, kappa {_fmt(r['kappa'])} [{_fmt(r['kappa_lo'])}, {_fmt(r['kappa_hi'])}], "
                     f"raw agreement {_fmt(r['raw_agreement'])} [{_fmt(r['raw_agreement_lo'])}, {_fmt(r['raw_agreement_hi'])}], "
                     f"false positives {_fmt(r['fpr'])}, false negatives {_fmt(r['fnr'])}")
    with_p = sorted(set(curves["judge"].to_list())) if curves.height else []
    for j in with_p:
        lines.append(f"  {j}: ECE {_fmt(curves.filter(pl.col('judge') == j)['ece'][0])} over {curves.filter(pl.col('judge') == j).height} bins")
    without = [j for j in sorted(table["judge"].unique().to_list()) if j not in with_p]
    if without:
        lines.append(f"  no calibration curve for {', '.join(without)}: their verdicts carry no probability")
    return "\n".join(lines)


annotate.flag_aliases = {"--import": "--filled"}
