"""A planted-concept CLIP: ``ccs-toy``, trained on a procedurally generated world whose factors are known.

- :mod:`ccs_dist.data.toy.world`: the factors, the renderer and the template captions;
- :mod:`ccs_dist.data.toy.scenes`: probe folders (``toy:N``) and held-out ImageFolder tasks ``toy-<factor>`` on disk;
- :mod:`ccs_dist.data.toy.pool`: the ``toy`` description pool (the default pool plus every factor value);
- :mod:`ccs_dist.toy.planted`: which heads training plants a factor in, and the loss that does it;
- :mod:`ccs_dist.toy.train`: training, then a null-caption phase for the text tower (``ccs-dist train-toy``;
  the bundled ``planted_v2`` weights);
- :mod:`ccs_dist.toy.ground_truth`: per-head variance share (eta^2) and selectivity of each factor;
- :mod:`ccs_dist.toy.outcomes`: the method against that ground truth (``toy_heads``, ``toy_outcomes``).
"""
