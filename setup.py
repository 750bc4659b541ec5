"""Only what pyproject.toml cannot say: the top-level ``jobs/`` folder ships inside the package as ``ccs_dist.job_specs``."""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["ccs_dist*"]), "ccs_dist.job_specs"],
    package_dir={"ccs_dist.job_specs": "jobs"},
    package_data={"ccs_dist.job_specs": ["*.yaml"]},
)
