"""Evaluation tasks for soft-pruned CLIP models: zero-shot classification, video retrieval, social bias.

Modules: ``datasets`` (classification loaders), ``video`` (retrieval), ``bias`` (MaxSkew / NDKL on FairFace
and SocialCounterfactuals), ``zeroshot``, ``retrieval`` and ``biasmetrics`` (metrics), ``encode`` (the
masked engine and the text tower), ``synthetic`` (test data in the real formats), ``run`` (the
``evaluation`` table).
"""

from ccs_dist.evaluate.run import ALL_TASKS, EvalConfig, evaluate

__all__ = ["ALL_TASKS", "EvalConfig", "evaluate"]
