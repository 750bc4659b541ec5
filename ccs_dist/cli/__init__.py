"""The ``ccs-dist`` command: one module per command group, shared options in :mod:`.options`.

A command is a function; its flags are derived from its parameters and the stage configs they are annotated
with (:mod:`.flags`), and it calls a stage of :mod:`ccs_dist.stages`.
Every user error surfaces as one line ``error: ...`` on stderr and a non-zero exit.
"""

from __future__ import annotations

import os
import sys

from ccs_dist.cli import agreement as _agreement
from ccs_dist.cli import benchmark as _benchmark
from ccs_dist.cli import evaluate as _evaluate
from ccs_dist.cli import judge as _judge
from ccs_dist.cli import probe as _probe
from ccs_dist.cli import report as _report
from ccs_dist.cli import score as _score
from ccs_dist.cli import toy as _toy
from ccs_dist.cli.options import terminal
from ccs_dist.cli.flags import run_command
from ccs_dist.core.errors import run_at_edge
from ccs_dist.core.log import setup_logging


class Commands:
    """ccs-dist: Concept Consistency Score of CLIP attention heads.

    Run `ccs-dist COMMAND --help` for a command's flags.
    """

    decompose = _probe.decompose
    textspan = _probe.textspan
    score = _score.score
    agreement = _agreement.agreement
    annotate = _agreement.annotate
    judge_check = _judge.judge_check
    evaluate = _evaluate.evaluate
    report = _report.report
    attribute = _evaluate.attribute
    benchmark = _benchmark.benchmark
    train_toy = _toy.train_toy


def command_names() -> list[str]:
    """The commands as typed: ``train-toy`` (fire takes ``train_toy`` too)."""
    return sorted(n.replace("_", "-") for n, v in vars(Commands).items() if callable(v) and not n.startswith("_"))


def overview() -> str:
    """``ccs-dist --help``: every command with the first line of its docstring."""
    width = max(map(len, command_names()))
    lines = ["usage: ccs-dist COMMAND [--flag VALUE ...]", "",
             "Concept Consistency Score of CLIP attention heads: decompose, TextSpan, LLM scoring, pruned evaluation.", "",
             "commands:"]
    for name in command_names():
        summary = (getattr(Commands, name.replace("-", "_")).__doc__ or "").strip().splitlines()[0]
        lines.append(f"  {name:<{width}}  {summary}")
    lines += ["", "`ccs-dist COMMAND --help` lists a command's flags. The whole study as one job:",
              "python -m ccs_dist.jobs.full_grid --help"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(overview())
        return 0
    if args[0].replace("_", "-") not in command_names():
        print(f"error: unknown command {args[0]!r}: use one of {', '.join(command_names())} (ccs-dist --help lists them)",
              file=sys.stderr)
        return 2
    setup_logging()
    if not terminal():  # huggingface_hub / transformers bars (the offline judge's weights) follow ours
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    name = args[0].replace("_", "-")
    func = getattr(Commands, name.replace("-", "_"))

    def run() -> None:
        result = run_command(f"ccs-dist {name}", func, args[1:])
        if result is not None:
            print(result)

    return run_at_edge(run, "finished artifacts are kept, re-run the same command to resume")
