"""The full-grid job: the spec, the plan and its books, resume, local mode (entry: ``python -m ccs_dist.jobs.full_grid``)."""
