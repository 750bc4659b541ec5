"""Evaluation tasks for soft-pruned CLIP models: zero-shot classification, video retrieval, social bias.

Modules: ``video`` (retrieval), ``bias`` (MaxSkew / NDKL on FairFace and SocialCounterfactuals),
``zeroshot``, ``retrieval`` and ``biasmetrics`` (metrics), ``encode`` (the masked engine and the text
tower), ``run`` (the ``evaluation`` table). Task loaders, metadata and synthetic data live in
:mod:`ccs_dist.data`.
"""

from ccs_dist.evaluate.run import ALL_TASKS, EvalConfig, evaluate

__all__ = ["ALL_TASKS", "EvalConfig", "evaluate"]
