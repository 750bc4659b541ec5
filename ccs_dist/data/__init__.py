"""Data the stages read: probe image sets, evaluation task loaders, synthetic writers and task metadata.

:mod:`.images` (probe sets for decomposition), :mod:`.datasets` (classification / retrieval loaders),
:mod:`.paper_tasks` (the paper's task variants), :mod:`.synthetic` and :mod:`.synthetic_images` (offline
stand-ins), :mod:`.metadata` (class names, templates, concept families; files under ``files/``).
"""
