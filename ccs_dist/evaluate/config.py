"""How to evaluate: the ``evaluation`` section of a job spec and the flags of ``ccs-dist evaluate``.

:class:`EvalConfig` is the head-set options (:class:`~ccs_dist.ccs.head_sets.HeadSetConfig`, which it extends, so
``build_head_sets`` takes it as is) plus the tasks, data and protocol knobs. A field's ``metadata`` says its help
and the edge's checks (:mod:`ccs_dist.stages.config`); ``internal`` fields are set by the stage.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ccs_dist.ccs.head_sets import HeadSetConfig
from ccs_dist.core.errors import UserError, check_at_least


@dataclass(frozen=True)
class EvalConfig(HeadSetConfig):
    """Which head sets (the inherited fields), which tasks, how."""

    tasks: tuple[str, ...] = field(default=(), metadata={"help": (
        "tasks: cifar10, cifar100, food101, country211, oxford_pets, imagenet, imagenet_a, imagenet_r (zero-shot "
        "top-1/top-5), msrvtt, msvd, didemo (video retrieval), fairface, socialcounterfactuals (MaxSkew@k / NDKL@k); "
        "NAME@PATH reads a task from PATH instead of the data root; folder@PATH is any folder of class sub-folders "
        "with a classnames.txt; toy-colour, toy-shape, toy-position, toy-size, toy-texture are held-out sets of the "
        "ccs-toy world (write them with python -m ccs_dist.data.synthetic DATA_ROOT toy-colour ...)")})
    shards: int = field(default=1, metadata={"ge": 1, "spec_only": True, "help": (
        "task groups any worker holding the model may evaluate (not in the stage key)")})
    data_root: str | None = field(default=None, metadata={"help": (
        "folder holding the datasets in their distributed layouts (cifar-10-batches-py/, food-101/, country211/, "
        "oxford-iiit-pet/, imagenet/val/, imagenet-a/, imagenet-r/, msrvtt/, msvd/, didemo/, fairface/, "
        "socialcounterfactuals/); required for real datasets (a job's synthetic ones default to CACHE_DIR/synthetic-data)")})
    synthetic: bool = field(default=False, metadata={"spec_only": True, "help": (
        "write synthetic datasets in the real formats into data_root first")})
    batch_size: int = field(default=64, metadata={"ge": 1, "help": "images per forward pass (every head set shares it)"})
    workers: int = field(default=0, metadata={"ge": 0, "help": "data-loading worker processes"})
    limit: int | None = field(default=None, metadata={"ge": 1, "help": (
        "evaluate at most this many images (videos) per task, evenly spaced (quick runs; none: all)")})
    templates_per_class: int | None = field(default=None, metadata={"ge": 1, "help": (
        "use only the first N prompt templates of each ensemble (quick runs; none: all)")})
    frames: int | None = field(default=None, metadata={"ge": 1, "help": "frames per video (none: 12; 32 for DiDeMo)"})
    caption_mode: Literal["first", "all"] = field(default="first", metadata={"help": (
        "first (one caption per video, the paper's protocol) or all")})
    k: int = field(default=10, metadata={"ge": 1, "help": "top-k of MaxSkew@k and NDKL@k"})
    occupations: str | None = field(default=None, metadata={"help": (
        "occupation list, one a line (none: the paper's 104, shipped with ccs_dist)")})
    ablation: Literal["zero", "mean"] = field(default="zero", metadata={"help": (
        "zero (the paper) or mean (replace a head's output with its mean over the task's images)")})
    download: bool = field(default=False, metadata={"help": (
        "let torchvision download the datasets it can (cifar10, cifar100, food101, country211, oxford_pets)")})
    video_pooling: Literal["renormalised", "mean"] = field(default="renormalised", metadata={"help": (
        "renormalised (unit-norm mean of the frame embeddings) or mean (the paper's code)")})
    class_names: Literal["standard", "paper"] = field(default="standard", metadata={"help": (
        "standard or paper (the reference code's class names)")})
    bias_templates: Literal["standard", "paper"] = field(default="standard", metadata={"help": (
        "standard (the occupation templates) or paper (the reference's four)")})
    bias_ranking: Literal["global", "per_occupation"] = field(default="global", metadata={"help": (
        "global or per_occupation (SocialCounterfactuals as the paper's code)")})
    progress: bool = field(default=True, metadata={"internal": True})  # a bar over the tasks and a log line per task

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.class_names not in ("standard", "paper") or self.bias_templates not in ("standard", "paper"):
            raise UserError(f"class_names / bias_templates must be standard or paper, got {self.class_names!r} / {self.bias_templates!r}")
        check_at_least(1, batch_size=self.batch_size, limit=self.limit, templates_per_class=self.templates_per_class)
        if self.ablation not in ("zero", "mean"):
            raise UserError(f"ablation must be 'zero' or 'mean', got {self.ablation!r}")
