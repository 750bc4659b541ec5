"""Entry points that compose the stages: ``python -m ccs_dist.jobs.full_grid``."""
