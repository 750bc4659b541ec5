"""Step 1: every image embedding decomposed into the direct contribution of each attention head.

- :mod:`.kernel`: one batch decomposed (Gandelsman et al.'s linearised ``ln_post``);
- :mod:`.config`: how an image set is decomposed;
- :mod:`.image_set`: an image set into a sharded, cached artifact (:mod:`.stream`, :mod:`.loader`,
  :mod:`.device_decode`, :mod:`.shard_writer` underneath);
- :mod:`.moments`: per-head count, sum and Gram that TextSpan needs, kept instead of the heads if asked.
"""
