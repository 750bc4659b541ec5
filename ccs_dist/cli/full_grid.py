"""The whole study as one job: ``python -m ccs_dist.jobs.full_grid [--spec NAME|FILE] [--local] [--out DIR]``.

``--spec`` takes a shipped spec's name (demo, paper_grid, local_gpu; see the top-level ``jobs/``) or a
YAML file. With no spec it runs ``demo``, offline: ccs-toy, a small CLIP trained on a toy world whose
factors are known (bundled weights), beside the same architecture at random init as the contrast; toy-world
probe images and tasks, synthetic evaluation sets, the offline judge. Without ``--local`` the stages run on Ray: the cluster of ``--address`` or
``RAY_ADDRESS`` (``ray job submit`` sets it), else a Ray instance started on this machine. ``--local``
runs the same stages in this process and never imports ray. Re-running the same command reuses every
finished stage; ``--force STAGE`` recomputes that stage and the ones after it. (The module users run,
``ccs_dist.jobs.full_grid``, is this command's entry point.)
"""

from __future__ import annotations

import argparse
import os
import sys

from ccs_dist.stages.chain import STAGES
from ccs_dist.core.errors import run_at_edge
from ccs_dist.core.log import setup_logging
from ccs_dist.jobs.pipeline import run_job
from ccs_dist.jobs.spec import load_spec


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m ccs_dist.jobs.full_grid", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spec", default=None, help="a shipped spec (demo, paper_grid, local_gpu) or a YAML file; default: demo")
    parser.add_argument("--local", action="store_true", help="run every stage in this process (no Ray)")
    parser.add_argument("--out", default=None, help="output root (overrides the spec's out:); the run goes to OUT/<run>")
    parser.add_argument("--cache-dir", default=None, help="cache root (overrides the spec's cache_dir:)")
    parser.add_argument("--force", action="append", default=[], metavar="STAGE",
                        help=f"recompute STAGE ({', '.join(STAGES)}) and what depends on it; repeatable")
    parser.add_argument("--address", default=None, help="Ray address (default: RAY_ADDRESS, else a local Ray instance)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars (they are off anyway when stderr is not a terminal)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging()

    def run() -> None:
        overrides = {k: v for k, v in (("out", args.out), ("cache_dir", args.cache_dir)) if v is not None}
        # bars only on a terminal: in a redirected log they are noise (carriage returns, one line per refresh)
        show_progress = not args.quiet and sys.stderr.isatty()
        if not show_progress:  # also the bars of huggingface_hub / transformers (read when they are imported)
            os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        outcome = run_job(load_spec(args.spec, overrides), mode="local" if args.local else "ray",
                          force=tuple(args.force), show_progress=show_progress, address=args.address)
        print(outcome.summary)

    return run_at_edge(run, "finished stages are kept, run the same command again to resume")


if __name__ == "__main__":
    sys.exit(main())
