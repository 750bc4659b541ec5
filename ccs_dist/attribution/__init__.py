"""Head attribution over a dataset: the ``attribution`` table, deletion curves, faithfulness, semantic reliance.

The per-batch maths (gates, direct effects, exact ablation, deletion curves) lives in
:mod:`ccs_dist.attribution.maths`; this package runs it over a classification task (:mod:`.run`),
relates the most relied-on heads of each class to their CCS labels (:mod:`.reliance`) and serves
``ccs-dist attribute`` (:mod:`.command`).
"""

from ccs_dist.attribution.run import AttributionConfig, AttributionResult, attribute_task

__all__ = ["AttributionConfig", "AttributionResult", "attribute_task"]
