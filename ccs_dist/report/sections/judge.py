"""The judge's validation beside CCS: kappa with its interval, raw agreement, FPR and FNR of every judge on the
shipped gold pairs (table ``judge_validation``), or a warning that the run's judge was not validated."""

from __future__ import annotations

from ccs_dist.report.formatting import fmt
from ccs_dist.report.html import Markup, table, tag
from ccs_dist.report.view import ReportView


def _ci(r: dict, m: str) -> str:
    return f"{fmt(r[m], 3)} [{fmt(r[m + '_lo'], 2)}, {fmt(r[m + '_hi'], 2)}]"


def judge_validation(view: ReportView) -> Markup:
    t = view.data.get("judge_validation")
    if t is None or t.height == 0 or int(t["n"].min()) == 0:
        return tag("p", tag("strong", "Judge not validated: "),
                   "this run has no judge_validation table with verdicts on the gold pairs (llm.judge_gold_pairs: 0, an "
                   "older run, or every gold verdict failed), so nothing says how far its verdicts, and the CCS built on "
                   "them, can be believed. Run `ccs-dist judge-check` with the same judge.", class_="warn", id="judge-unvalidated")
    rows = [[r["judge"], r["n"], _ci(r, "kappa"), _ci(r, "raw_agreement"), fmt(r["fpr"], 3), fmt(r["fnr"], 3), r["n_failed"]]
            for r in t.unique(maintain_order=True).iter_rows(named=True)]
    caption = (f"Judge validation on the shipped gold pairs (gold {t['gold'][0]}): pairs whose truth follows from the toy "
               "world's construction, never used to set a threshold; 95 % intervals (kappa: bootstrap; the rest: Wilson)")
    return Markup(table(["judge", "pairs", "Cohen's κ", "raw agreement", "false positives", "false negatives", "failed"],
                        rows, caption=caption))
