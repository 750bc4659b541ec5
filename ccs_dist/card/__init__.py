"""The head card: image-grounded scores of each head's label (detection, simulation, monosemanticity),
judged offline by a reference CLIP that is not the audited model, beside CCS. See :mod:`ccs_dist.card.run`."""
