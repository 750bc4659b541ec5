"""``benchmark``: a run scored against the heads its model was planted with, every check beside its null."""

from __future__ import annotations

import polars as pl

from ccs_dist.benchmark.config import BenchmarkConfig
from ccs_dist.core.errors import UserError


def benchmark(self, benchmark: BenchmarkConfig, run_dir: str = "", spec: str | None = None, plan: str | None = None):
    """Score a run against its planted plan: every check with its null and p-value (tables benchmark_heads, benchmark_checks).

    Reads RUN_DIR's tables (ground_truth, direct_ablation, ccs, spans, judgments: a job with a toy:N probe set
    and toy-<factor> tasks writes them), writes RUN_DIR/tables/benchmark_heads.parquet and
    benchmark_checks.parquet, and prints the checks. With --spec, runs that job first (locally; finished
    stages are reused) and scores its run.

    Args:
        run_dir: the run's output directory (reports/<run>); not needed with --spec.
        spec: a job spec (a shipped name such as demo, or a YAML file) to run first.
        plan: the plan table as parquet (model, layer, head, kind, factors, weights, expected); default: the
            plan of the bundled ccs-toy/planted_v2 weights.
    """
    from ccs_dist.stages.benchmark import benchmark_run

    if spec:
        from ccs_dist.jobs.pipeline import run_job  # the job layer: only when asked to run one
        from ccs_dist.jobs.spec import load_spec

        run_dir = str(run_job(load_spec(spec, {}), mode="local", show_progress=False).run_dir)
    if not run_dir:
        raise UserError("benchmark needs RUN_DIR (a run's output directory, e.g. reports/demo) or --spec demo")
    return format_checks(benchmark_run(run_dir, benchmark, plan))


def format_checks(checks: pl.DataFrame) -> str:
    """One line per check: model, check, value (± spread over seeds), null mean / p95, p, n, pass."""
    def num(v, fmt="{:.3f}"):
        return "-" if v is None else fmt.format(v)

    lines = []
    for r in checks.iter_rows(named=True):
        spread = "" if r["spread"] is None else f" ± {r['spread']:.3f}"
        lines.append(f"{r['model']:<28} {r['check']:<70} {num(r['value'])}{spread}  null {num(r['null_mean'])} "
                     f"(p95 {num(r['null_p95'])})  p {num(r['p_value'], '{:.4f}')}  n {r['n']}  "
                     f"{'PASS' if r['passed'] else 'fail'}")
    return "\n".join(lines)
