"""The ``ccs-dist`` command (fire). Parses arguments, builds stage configs, calls the stages.

Every user error surfaces as one line ``error: ...`` on stderr and a non-zero exit.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


class Commands:
    """ccs-dist: Concept Consistency Score of CLIP attention heads.

    Run `ccs-dist COMMAND --help` for a command's flags.
    """

    def decompose(
        self,
        model: str = "ViT-B-32",
        pretrained: str | None = None,
        images: str = "synthetic:256",
        layers: int | list[int] = 4,
        batch_size: int = 64,
        device: str = "auto",
        precision: str | None = None,
        cache_dir: str = "cache",
        on_bad_image: str = "skip",
        workers: int | None = None,
    ):
        """Decompose every probe image's embedding into per-head direct contributions (cached, sharded).

        Args:
            model: open_clip architecture (ViT-B-32, ViT-B-16, ViT-L-14, ...) or hf-hub:ORG/REPO.
            pretrained: pretrained tag (openai, laion2b_s34b_b88k, ...), a checkpoint file, or none for random init.
            images: probe images: synthetic:N[:SEED], toy:N[:SEED] (the ccs-toy world, factors in labels.csv),
                a folder (flat or one sub-folder per class), folder:PATH,
                or NAME:ROOT for a torchvision dataset (cifar10, cifar100, imagenet, food101, stl10).
            layers: an int n for the last n layers, or a list of 0-based layer indices, e.g. [8,9,10,11].
            batch_size: images per forward pass.
            device: cpu, cuda, cuda:N or auto (CUDA when available).
            precision: fp32 or bf16 (autocast, CUDA only); default bf16 on CUDA, fp32 on CPU.
            cache_dir: root of the content-addressed cache; a second run with the same inputs reuses it.
            on_bad_image: skip (skip and count unreadable files) or error (stop at the first one).
            workers: data-loading worker processes (default min(4, cpus - 1)).
        """
        from ccs_dist.runners import run_decompose

        outcome = run_decompose(_decompose_run(**locals()))
        art = outcome.artifact
        return (
            f"decomposed {art.n_images} images ({len(art.manifest['skipped'])} skipped) of {outcome.loaded.key}, "
            f"layers {list(art.layers)}: {art.path}"
        )

    def textspan(
        self,
        model: str = "ViT-B-32",
        pretrained: str | None = None,
        images: str = "synthetic:256",
        layers: int | list[int] = 4,
        pool: str = "default",
        m: int = 5,
        rank: int = 80,
        method: str = "exact",
        out: str = "reports/textspan",
        batch_size: int = 64,
        device: str = "auto",
        precision: str = "fp32",
        cache_dir: str = "cache",
        on_bad_image: str = "skip",
        workers: int | None = None,
        rank_policy: str = "numerical",
        resamples: int = 8,
    ):
        """Find the m descriptions that span each head's output (TextSpan) and write the spans table.

        Writes OUT/tables/spans.parquet (model, layer, head, rank, text, variance, requested_rank,
        effective_rank, stability, span1_stability) and OUT/manifest.json.

        Args:
            model: open_clip architecture (ViT-B-32, ViT-B-16, ViT-L-14, ...) or hf-hub:ORG/REPO.
            pretrained: pretrained tag (openai, laion2b_s34b_b88k, ...), a checkpoint file, or none for random init.
            images: probe images: synthetic:N[:SEED], toy:N[:SEED], a folder, folder:PATH, or NAME:ROOT (cifar10, imagenet, ...).
            layers: an int n for the last n layers, or a list of 0-based layer indices.
            pool: description pool: default (the project's own pool), toy (it plus lines naming every toy-world
                factor value) or a text file, one description a line.
            m: descriptions per head.
            rank: requested TextSpan rank (at most the embedding size); with rank_policy numerical each head
                uses min(rank, its numerical rank).
            method: exact, or faiss (candidates from a FAISS search along each head's principal directions,
                then exact TextSpan on them; for very large pools).
            out: output directory of the run.
            batch_size: images per forward pass.
            device: cpu, cuda, cuda:N or auto.
            precision: of the decomposition and text embeddings: fp32 (default; bf16 changes the spans) or bf16 (CUDA only).
            cache_dir: root of the content-addressed cache.
            on_bad_image: skip or error.
            workers: data-loading worker processes.
            rank_policy: numerical (cap each head's rank at its numerical rank, so rounding cannot flip spans)
                or reference (the reference code's rank, noise directions included).
            resamples: random half-samples of the probe images for the stability columns (0: none).
        """
        from ccs_dist.runners import TextSpanRun, run_textspan
        from ccs_dist.span_stability import StabilityConfig
        from ccs_dist.spans import SpanConfig

        from ccs_dist.errors import check_dir_arg, check_int

        if method not in ("exact", "faiss"):
            raise _user_error(f"unknown method {method!r}: use exact or faiss")
        check_int("--m", m, 1)
        check_int("--rank", rank, 1)
        check_dir_arg("--out", out)
        if rank_policy not in ("numerical", "reference"):
            raise _user_error(f"unknown rank_policy {rank_policy!r}: use numerical or reference")
        if precision not in ("fp32", "bf16"):
            raise _user_error(f"unknown precision {precision!r}: use fp32 or bf16")
        if isinstance(resamples, bool) or not isinstance(resamples, int) or resamples < 0:
            raise _user_error(f"resamples={resamples!r}: give an integer >= 0")
        args = dict(locals())
        skip = ("pool", "m", "rank", "method", "out", "rank_policy", "resamples")
        result = run_textspan(
            TextSpanRun(
                probe=_decompose_run(**{k: v for k, v in args.items() if k not in skip}),
                pool=pool,
                spans=SpanConfig(m=int(m), rank=int(rank), method=method, rank_policy=rank_policy, precision=precision,
                                 stability=StabilityConfig(resamples=resamples)),
                out=out,
            )
        )
        table = result["table"]
        first = table.filter(table["rank"] == 0).sort("layer", "head").head(4)
        lines = [f"{row['layer']:>3} {row['head']:>3}  {row['text']}" for row in first.iter_rows(named=True)]
        return "\n".join([f"spans of {result['heads']} heads written to {result['spans']}", "layer head  first span", *lines, "..."])

    def score(
        self,
        spans: str = "",
        out: str = "",
        backend: str = "openai",
        base_url: str | None = None,
        llm_model: str = "gpt-4o-mini",
        judges: str | None = None,
        judge_mode: str = "pair",
        cache_dir: str = "cache",
        no_cache: bool = False,
        refresh_cache: bool = False,
        api_key_env: str = "OPENAI_API_KEY",
        rpm: float = 500,
        tpm: float = 200000,
        concurrency: int = 16,
        timeout: float = 60,
        max_attempts: int = 8,
        price_in: float = 0.15,
        price_out: float = 0.60,
        embedder: str = "minilm",
        threshold: float | None = None,
        progress: bool = True,
        max_description_chars: int = 2000,
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
            threshold: offline judge cosine threshold (default: calibrated on the default pool's family tags).
            progress: show a progress bar (--progress=False or --noprogress to hide it).
            max_description_chars: descriptions longer than this are cut to it (with a warning) before they are sent.
        """
        from ccs_dist.errors import check_dir_arg
        from ccs_dist.llm.commands import score_command

        if not spans or not out:
            raise _user_error("score needs --spans SPANS.parquet (or a run directory) and --out DIR")
        check_dir_arg("--out", out)  # before any request is paid for
        check_dir_arg("--cache-dir", cache_dir)
        return score_command(
            _table_in(spans, "spans"), str(Path(out) / "tables"), backend=backend, base_url=base_url, llm_model=llm_model, judges=judges, judge_mode=judge_mode,
            cache_dir=str(Path(cache_dir) / "llm"), no_cache=no_cache, refresh_cache=refresh_cache, api_key_env=api_key_env, rpm=rpm,
            tpm=tpm, concurrency=concurrency, timeout=timeout, max_attempts=max_attempts, price_in=price_in,
            price_out=price_out, embedder=embedder, threshold=threshold, progress=bool(progress) and _terminal(),
            max_description_chars=max_description_chars,
        )

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
        from ccs_dist.llm.commands import agreement_command

        return agreement_command(_table_in(judgments, "judgments") if judgments else judgments, human=human, judge_a=judge_a, judge_b=judge_b, export=export, n=n, seed=seed, out=out)

    def evaluate(
        self,
        model: str = "ViT-B-32",
        pretrained: str | None = None,
        tasks: str = "cifar10",
        data_root: str | None = None,
        ccs: str | None = None,
        conditions: str = "original,high,low,moderate,random,equal,concept",
        seeds: str = "0,1,2",
        concepts: str | None = None,
        concept_map: str | None = None,
        heads: str | None = None,
        out: str = "reports/evaluate",
        batch_size: int = 64,
        limit: int | None = None,
        device: str = "auto",
        download: bool = False,
        frames: int | None = None,
        caption_mode: str = "first",
        k: int = 10,
        occupations: str | None = None,
        ablation: str = "zero",
        templates_per_class: int | None = None,
        workers: int = 0,
    ):
        """Soft-prune head sets and evaluate them on tasks; write OUT/tables/evaluation.parquet.

        One pass over each task's data serves every head set (condition). Rows: model, task, condition,
        seed, n_pruned, metric, value; random sets per seed plus random:mean and random:std.

        Args:
            model: open_clip architecture (ViT-B-32, ViT-B-16, ViT-L-14, ...) or hf-hub:ORG/REPO.
            pretrained: pretrained tag (openai, laion2b_s34b_b88k, ...), a checkpoint file, or none for random init.
            tasks: comma-separated tasks: cifar10, cifar100, food101, country211, oxford_pets, imagenet, imagenet_a,
                imagenet_r (zero-shot top-1/top-5), msrvtt, msvd, didemo (video retrieval), fairface,
                socialcounterfactuals (MaxSkew@k / NDKL@k); NAME@PATH reads a task from PATH instead of
                --data-root; folder@PATH is any folder of class sub-folders with a classnames.txt; toy-colour,
                toy-shape, toy-position, toy-size, toy-texture are held-out sets of the ccs-toy world (write them
                with python -m ccs_dist.evaluate.synthetic DATA_ROOT toy-colour ...).
            data_root: folder holding the datasets in their distributed layouts (cifar-10-batches-py/, food-101/,
                country211/, oxford-iiit-pet/, imagenet/val/, imagenet-a/, imagenet-r/, msrvtt/, msvd/, didemo/,
                fairface/, socialcounterfactuals/); a wrong layout is reported with the expected one.
            ccs: the ccs table (parquet from `ccs-dist score`, or its run directory) that defines high/low/moderate/random/equal/concept sets.
            conditions: comma-separated: original, high, low, moderate, random, equal, concept (all but original
                need --ccs; without it they are dropped with a warning).
            seeds: comma-separated seeds of the random sets (>= 3 for mean and std).
            concepts: comma-separated concept families to prune (default: every family some head label matches).
            concept_map: JSON file {family: [synonym, ...]} replacing the default label -> family map.
            heads: explicit head lists, ';'-separated, each NAME=L11.H5,L10.H8 or just L11.H5,L10.H8.
            out: output directory; the table goes to OUT/tables/evaluation.parquet.
            batch_size: images per forward pass (every head set shares it).
            limit: evaluate at most this many images (videos) per task, evenly spaced (quick runs).
            device: cpu, cuda, cuda:N or auto.
            download: let torchvision download the datasets it can (cifar10, cifar100, food101, country211, oxford_pets).
            frames: frames per video (default 12; 32 for DiDeMo).
            caption_mode: first (one caption per video, the paper's protocol) or all.
            k: top-k of MaxSkew@k and NDKL@k.
            occupations: occupation list, one a line (default: the paper's 104, shipped with ccs_dist).
            ablation: zero (the paper) or mean (replace a head's output with its mean; needs the engine's means).
            templates_per_class: use only the first N prompt templates of each ensemble (quick runs; default all).
            workers: data-loading worker processes.
        """
        args = {k_: v for k_, v in locals().items() if k_ != "self"}
        from ccs_dist.evaluate.command import as_list, evaluate_command

        args["data_root"] = _data_root(data_root, as_list(tasks))
        args["ccs"] = _table_in(ccs, "ccs") if ccs else ccs

        return evaluate_command(**args)

    def report(self, run_dir: str = "", out: str | None = None, paper: str | None = None):
        """Write a run's HTML report (one self-contained, offline page) and its tables as CSV; print the page's path.

        Reads RUN_DIR/manifest.json and RUN_DIR/tables/*.parquet; writes OUT/index.html and RUN_DIR/tables/NAME.csv.

        Args:
            run_dir: the run's output directory (reports/<run>, holding tables/*.parquet and manifest.json).
            out: directory for index.html (default: RUN_DIR itself).
            paper: the paper's published figures, shown beside this run's for the same weights
                (default: the copy shipped with ccs_dist).
        """
        from ccs_dist.report import write_report

        if not run_dir:
            raise _user_error("report needs RUN_DIR: the output directory of a run, e.g. ccs-dist report reports/demo")
        return str(write_report(run_dir, out_dir=out, paper_reference=paper))

    def attribute(
        self,
        model: str = "ViT-B-32",
        pretrained: str | None = None,
        task: str = "cifar10",
        data_root: str | None = None,
        ccs: str | None = None,
        out: str = "reports/attribute",
        limit: int | None = None,
        samples: int = 32,
        deletions: int = 16,
        seeds: str = "0,1,2",
        top_k: int = 5,
        threshold: float = 0.0,
        batch_size: int = 32,
        device: str = "auto",
        templates_per_class: int | None = None,
        workers: int = 0,
        download: bool = False,
        progress: bool = True,
    ):
        """Attribute each zero-shot prediction to the image tower's heads; check faithfulness against exact ablation.

        y = cos(image embedding, class text embedding); a head's attribution is dy/d(gate on its output), all
        heads from one backward pass. Writes OUT/tables/attribution.parquet (model, dataset, class, layer, head,
        method, value; methods attribution, direct, energy, exact; class null = whole dataset),
        attribution_curves.parquet (deletion curves), attribution_faithfulness.parquet (AUC per ranking,
        Spearman vs exact ablation per layer) and attribution_reliance.parquet (top heads per class, CCS labels).

        Args:
            model: open_clip architecture (ViT-B-32, ViT-B-16, ViT-L-14, ...) or hf-hub:ORG/REPO.
            pretrained: pretrained tag (openai, laion2b_s34b_b88k, ...), a checkpoint file, or none for random init.
            task: one classification task: cifar10, cifar100, food101, country211, oxford_pets, imagenet, imagenet_a,
                imagenet_r; NAME@PATH reads it from PATH; folder@PATH is a folder of class sub-folders with classnames.txt.
            data_root: folder holding the datasets in their distributed layouts (see ccs-dist evaluate --help).
            ccs: optional ccs table (parquet from `ccs-dist score`, or its run directory): adds the ccs ranking and the heads' labels to reliance.
            out: output directory; tables go to OUT/tables/.
            limit: attribute at most this many images, evenly spaced (quick runs).
            samples: images (evenly spaced) that also get exact ablation effects and deletion curves; 0 for none.
            deletions: most heads deleted along each deletion curve (curve points k = 0..deletions).
            seeds: comma-separated seeds of the random ranking (its curve is averaged over them).
            top_k: heads per class in the reliance table.
            threshold: alignment (label vs class name, minus an empty-prompt baseline) below which a relied-on head is flagged unexpected.
            batch_size: images per forward/backward pass.
            device: cpu, cuda, cuda:N or auto.
            templates_per_class: use only the first N prompt templates of each class (quick runs; default all).
            workers: data-loading worker processes.
            download: let torchvision download the datasets it can.
            progress: show a progress bar (--noprogress to hide it).
        """
        from ccs_dist.attribution.command import attribute_command

        return attribute_command(
            model, pretrained, task, _data_root(data_root, [str(task)]), _table_in(ccs, "ccs") if ccs else ccs, out, limit, samples, deletions, seeds, top_k, threshold,
            batch_size, device, templates_per_class, workers, download, progress=bool(progress) and _terminal(),
        )

    def train_toy(self, out: str = "ccs-toy.safetensors", steps: int = 1200, seed: int = 0, batch_size: int = 256,
                  threads: int = 2, null_steps: int = 150):
        """Train ccs-toy (the planted-concept CLIP of the demo) on the toy world; write its weights and print their sha256.

        The bundled weights (load_model("ccs-toy", "planted_v1")) come from its defaults (phase 2 run from the phase-1 file): about
        10-15 minutes on a 2-core CPU. The same seed, steps and threads give the same file.

        Args:
            out: the safetensors file to write (load it with --model ccs-toy --pretrained OUT).
            steps: optimiser steps (batches) of phase 1: both towers on toy images and captions.
            null_steps: steps of phase 2: the text tower alone learns that text from outside the toy world
                (words of the default pool no toy caption uses) fits no toy image and tells none from another.
            seed: seed of the initialisation and of every training image and caption.
            batch_size: images per batch (a multiple of 4: batches are groups of 4 images that differ in one factor).
            threads: torch CPU threads (the result depends on it at float rounding level).
        """
        from pathlib import Path

        from ccs_dist.toy.train import TrainConfig, train_to_file

        for name, value, low in (("steps", steps, 1), ("seed", seed, 0), ("batch_size", batch_size, 4), ("threads", threads, 1),
                                 ("null_steps", null_steps, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise _user_error(f"{name}={value!r}: give an integer >= {low}")
        if batch_size % 4:
            raise _user_error(f"batch_size={batch_size}: give a multiple of 4 (batches are groups of 4 images)")
        path, digest, last_loss = train_to_file(TrainConfig(steps=steps, seed=seed, batch_size=batch_size, threads=threads, null_steps=null_steps), Path(out))
        return f"wrote {path} (sha256 {digest}), final loss {last_loss:.4f}"


def _terminal() -> bool:
    """Progress bars only when stderr is a terminal: redirected logs get log lines, not carriage returns."""
    return sys.stderr.isatty()


def _table_in(value: str, name: str) -> str:
    """A table argument: a parquet file, or a run directory holding ``tables/NAME.parquet``."""
    path = Path(str(value))
    if not path.is_dir():
        return str(value)
    for candidate in (path / "tables" / f"{name}.parquet", path / f"{name}.parquet"):
        if candidate.is_file():
            return str(candidate)
    return str(path / "tables" / f"{name}.parquet")  # missing: the error names the file a run would hold


def _data_root(data_root: str | None, tasks: list[str]) -> str:
    """``--data-root``, required unless every task names its own folder (``NAME@PATH``)."""
    if data_root:
        return str(data_root)
    if tasks and all("@" in t for t in tasks):
        return "."  # never read: each task names its folder
    raise _user_error("give --data-root FOLDER, the folder that holds the datasets (or name each task's folder as NAME@PATH)")


def _user_error(message: str):
    from ccs_dist.errors import UserError

    return UserError(message)


def _decompose_run(self=None, model="ViT-B-32", pretrained=None, images="synthetic:256", layers=4, batch_size=64,
                   device="auto", precision=None, cache_dir="cache", on_bad_image="skip", workers=None, **_ignored):
    from ccs_dist.decompose import DecomposeConfig
    from ccs_dist.runners import DecomposeRun, ModelSpec

    if on_bad_image not in ("skip", "error"):
        raise _user_error(f"unknown on_bad_image {on_bad_image!r}: use skip or error")
    if isinstance(layers, (list, tuple)):
        layers = tuple(int(x) for x in layers)
    elif isinstance(layers, str) or not isinstance(layers, int):
        raise _user_error(f"layers={layers!r}: give an int (last n layers) or a list like [8,9,10,11]")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise _user_error(f"batch_size={batch_size!r}: give a positive integer")
    from ccs_dist.errors import check_dir_arg, check_int

    if workers is not None:
        check_int("--workers", workers, 0)
    check_dir_arg("--cache-dir", cache_dir)
    pretrained = None if pretrained in (None, "none", "None", "") else str(pretrained)
    return DecomposeRun(
        model=ModelSpec(str(model), pretrained, device=device, precision=precision),
        images=str(images),
        cache_dir=str(cache_dir),
        decompose=DecomposeConfig(layers=layers, batch_size=batch_size, num_workers=workers, on_bad_image=on_bad_image,
                                  progress=_terminal()),
    )


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
    import fire

    from ccs_dist.errors import run_at_edge
    from ccs_dist.log import setup_logging

    args = sys.argv[1:] if argv is None else list(argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(overview())
        return 0
    if args[0].replace("_", "-") not in command_names():
        print(f"error: unknown command {args[0]!r}: use one of {', '.join(command_names())} (ccs-dist --help lists them)",
              file=sys.stderr)
        return 2
    setup_logging()
    if not _terminal():  # huggingface_hub / transformers bars (the offline judge's weights) follow ours
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    return run_at_edge(lambda: fire.Fire(Commands, command=args, name="ccs-dist"),
                       "finished artifacts are kept, re-run the same command to resume")


if __name__ == "__main__":
    sys.exit(main())
