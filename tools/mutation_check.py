"""Mutation check: each listed mutant of the science and the promises must be killed by the tests named with it.

    python tools/mutation_check.py [--only NAME ...] [--list]

The tracked files are copied once into a temporary directory; the named tests run there first unmutated
(they must pass, else a "kill" means nothing), then each mutant is applied (an exact snippet, which must
occur once, replaced), its tests run, and the file is restored. One line per mutant (killed / SURVIVED),
then a JSON summary as the last line. Exit status 0 when every mutant is killed. Not shipped in the package.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Mutant:
    name: str
    path: str  # file, relative to the repository root
    original: str  # exact snippet, occurring once
    replacement: str
    tests: tuple[str, ...]  # pytest node ids that must fail


MUTANTS = (
    Mutant("decompose: mean/beta shares moved from the heads into rest (the sum identity still holds)",
           "ccs_dist/decomposition/kernel.py",
           "    return to_joint(c_BHD, 1.0 / (n_terms * H))\n", "    return to_joint(c_BHD, 0.0)\n",
           ("tests/unit/decomposition/test_decompose.py::test_one_head_term_by_hand_with_the_reference_share_convention",)),
    Mutant("decompose: rest takes every share", "ccs_dist/decomposition/kernel.py",
           "rest_BE = to_joint(rest_BD, n_rest_terms / n_terms)", "rest_BE = to_joint(rest_BD, 1.0)",
           ("tests/unit/decomposition/test_decompose.py::test_heads_plus_rest_equal_the_embedding[ccs-tiny-2]",)),
    Mutant("textspan: no division by the embedding norm", "ccs_dist/decomposition/moments.py",
           "return (heads_NGE.float() / norms_N[:, None, None]).transpose(0, 1)", "return heads_NGE.float().transpose(0, 1)",
           ("tests/unit/spans/test_textspan.py::test_streamed_moments_are_those_of_heads_over_the_embedding_norm",)),
    Mutant("ccs: low threshold 1 -> 2 (the default every score config takes)", "ccs_dist/ccs/scores.py",
           "    low: int = 1\n", "    low: int = 2\n",
           ("tests/unit/ccs/test_ccs.py::test_the_cli_and_job_score_configs_use_the_paper_categories",)),
    Mutant("llm config: the score config's low threshold 1 -> 2", "ccs_dist/llm/config.py",
           "thresholds: CategoryThresholds = field(default_factory=CategoryThresholds,",
           "thresholds: CategoryThresholds = field(default_factory=lambda: CategoryThresholds(low=2),",
           ("tests/unit/ccs/test_ccs.py::test_the_cli_and_job_score_configs_use_the_paper_categories",)),
    Mutant("llm cache: model name left out of the request key", "ccs_dist/llm/client.py",
           '                "endpoint": self._endpoint,\n                "model": self.cfg.model,\n',
           '                "endpoint": self._endpoint,\n',
           ("tests/integration/test_llm_pool.py::test_each_judge_endpoint_is_asked_for_every_description",
            "tests/integration/test_llm_pool.py::test_cache_keys_differ_by_model_and_by_prompt_version")),
    Mutant("llm cache: prompt version left out of the request key", "ccs_dist/llm/client.py",
           '                "template": req.template,\n                "ask": req.ask,\n',
           '                "ask": req.ask,\n',
           ("tests/integration/test_llm_pool.py::test_cache_keys_differ_by_model_and_by_prompt_version",)),
    Mutant("llm pool: Retry-After ignored after a 429", "ccs_dist/llm/client.py",
           "wait = _retry_after(e.response.headers) or 1.0", "wait = 0.0",
           ("tests/integration/test_llm_pool.py::test_retry_after_pauses_the_whole_pool_at_least_that_long",)),
    Mutant("report: label unescaped in the attribution table", "ccs_dist/report/sections/attribution.py",
           '(h or {}).get("label") or "–"])', 'Markup((h or {}).get("label") or "–")])',
           ("tests/unit/report/test_report_render.py::test_hostile_text_is_escaped",)),
    Mutant("head attention: mean ablation zeroes instead", "ccs_dist/models/head_attention.py",
           "return z_BHPK * keep_BH11 + (1 - keep_BH11) * mean_HPK.to(z_BHPK.dtype)[None]", "return z_BHPK * keep_BH11",
           ("tests/unit/models/test_head_attention.py::test_mean_ablation_replaces_the_head_with_its_reference_mean",)),
    Mutant("head attention: the control context does not restore on exit", "ccs_dist/models/head_attention.py",
           "            self._control, self._capture = saved\n", "            pass\n",
           ("tests/unit/models/test_head_attention.py::test_control_context_nests_restores_and_rejects_bad_fields",)),
    Mutant("head attention: hook names drift from the module paths", "ccs_dist/models/head_attention.py",
           'name=f"visual.transformer.resblocks.{layer}.attn"', 'name=f"visual.blocks.{layer}.attn"',
           ("tests/unit/models/test_head_attention.py::test_every_image_attention_is_replaced_and_shares_parameters",)),
    Mutant("layering: a lazy upward import (ccs -> report)", "ccs_dist/ccs/scores.py",
           "a missing file is a user error.\"\"\"\n    if not path:",
           "a missing file is a user error.\"\"\"\n    from ccs_dist.report import render  # noqa: F401\n    if not path:",
           ("tests/unit/test_layering.py::test_no_import_runs_up_a_layer",)),
    Mutant("layering: the product imports a test helper", "ccs_dist/llm/score.py",
           "from ccs_dist.core.errors import UserError\n",
           "from ccs_dist.core.errors import UserError\nfrom tests.support import loopback  # noqa: F401\n",
           ("tests/unit/test_layering.py::test_product_never_imports_test_support",)),
    Mutant("offline judge: a vocabulary label scored again on its own (its verdict then depends on where it ran)",
           "ccs_dist/llm/calibration.py",
           "    outside = [o for o, c in enumerate(concepts) if c not in column]\n",
           "    outside = list(range(len(concepts)))\n    column = {}\n",
           ("tests/unit/llm/test_llm_offline.py::test_a_vocabulary_label_ties_with_itself_wherever_its_score_is_recomputed",)),
    Mutant("spans: the attention pooling's units left out of the spans table", "ccs_dist/spans/table.py",
           "    n_total = n_trunk + len(artifact.pool_units)\n", "    n_total = n_trunk\n",
           ("tests/unit/spans/test_pool_units.py::test_pool_units_get_their_own_rows_and_spans",)),
    Mutant("bias metrics: NDKL weights dropped", "ccs_dist/evaluate/biasmetrics.py",
           "np.log2(np.arange(2, k + 2))", "np.ones(k)",
           ("tests/unit/evaluate/test_eval_metrics.py::test_alternating_ranking_ndkl_by_hand_max_skew_zero_and_k_checked",)),
)


def _copy_tracked(dest: Path) -> None:
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                           capture_output=True, check=True).stdout.decode().split("\0")
    for rel in filter(None, files):
        src = REPO / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)


def _pytest(root: Path, tests: tuple[str, ...], timeout: int) -> tuple[int, str]:
    cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "--no-header", *tests]
    env = {**__import__("os").environ, "PYTHONPATH": str(root)}
    try:
        proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return 124, "timed out"
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    return proc.returncode, lines[-1] if lines else ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="run the mutants whose name contains one of these words")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--timeout", type=int, default=900, help="seconds per test run")
    args = parser.parse_args(argv)
    mutants = [m for m in MUTANTS if not args.only or any(w in m.name for w in args.only)]
    if args.list:
        for m in mutants:
            print(f"{m.name}\n    {m.path}; killed by {', '.join(m.tests)}")
        return 0
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="ccs-mutants-") as tmp:
        root = Path(tmp)
        _copy_tracked(root)
        for m in mutants:  # every snippet must still name exactly one place
            n = (root / m.path).read_text(encoding="utf-8").count(m.original)
            if n != 1:
                print(json.dumps({"error": f"{m.name}: snippet occurs {n} times in {m.path}"}))
                return 2
        baseline = tuple(dict.fromkeys(t for m in mutants for t in m.tests))
        rc, tail = _pytest(root, baseline, args.timeout)
        print(f"baseline ({len(baseline)} tests): {'pass' if rc == 0 else 'FAIL'}  {tail}", flush=True)
        if rc != 0:
            print(json.dumps({"baseline_ok": False, "mutants": len(mutants), "killed": 0, "survived": []}))
            return 2
        survived = []
        for m in mutants:
            path = root / m.path
            text = path.read_text(encoding="utf-8")
            path.write_text(text.replace(m.original, m.replacement), encoding="utf-8")
            try:
                rc, tail = _pytest(root, m.tests, args.timeout)
            finally:
                path.write_text(text, encoding="utf-8")
            killed = rc not in (0, 5)  # 5: no test collected, which kills nothing
            if not killed:
                survived.append(m.name)
            print(f"{'killed  ' if killed else 'SURVIVED'}  {m.name}  ({tail})", flush=True)
    summary = {"baseline_ok": True, "mutants": len(mutants), "killed": len(mutants) - len(survived),
               "survived": survived, "seconds": round(time.monotonic() - t0, 1)}
    print(json.dumps(summary))
    return 0 if not survived else 1


if __name__ == "__main__":
    sys.exit(main())
