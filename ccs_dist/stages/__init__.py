"""The stage layer: each stage is a typed config and a function over artifacts, called the same way by the
CLI (:mod:`ccs_dist.cli`), local mode (:mod:`ccs_dist.jobs.pipeline`) and the Ray actors
(:mod:`ccs_dist.distributed`). :mod:`.chain` holds the order, inputs and resume keys of a model's stages.

Modules: :mod:`.decompose`, :mod:`.spans`, :mod:`.score`, :mod:`.evaluate`, :mod:`.attribution`,
:mod:`.report`, with :mod:`.model` (which model, which precision) and :mod:`.config` (the config base).
Only the library lies below; nothing here imports the CLI, job or Ray layers.
"""
