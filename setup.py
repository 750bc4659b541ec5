"""Only what pyproject.toml cannot say: the top-level ``jobs/`` folder ships inside the package as ``ccs_dist.job_specs``
(package data, its *.yaml included, stays in pyproject.toml)."""

from setuptools import find_namespace_packages, setup

setup(
    packages=[*find_namespace_packages(include=["ccs_dist*"]), "ccs_dist.job_specs"],
    package_dir={"ccs_dist.job_specs": "jobs"},
)
