"""The planted-concept benchmark: an explain-and-score pipeline against heads whose concepts are known.

- :mod:`.config`: its options (``ccs-dist benchmark``'s flags).
- :mod:`.plans`: the plan table (which head was planted with what, and what score it should get).
- :mod:`.direct`: ground truth 2, direct-path ablation (a head's direct term removed from the embedding).
- :mod:`.stats`: AUROC, permutation and matched-random nulls.
- :mod:`.heads`, :mod:`.checks`, :mod:`.tables`: the ``benchmark_heads`` and ``benchmark_checks`` tables.
"""
