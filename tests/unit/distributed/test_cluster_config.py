"""cluster.yaml and its on-premise variant: valid Ray cluster-launcher configs that install this package (no SSH)."""

from __future__ import annotations

import copy

import pytest
import yaml

from tests.support.paths import REPO


def _load(name):
    return yaml.safe_load((REPO / name).read_text(encoding="utf-8"))


@pytest.mark.parametrize("name", ["cluster.yaml", "cluster-onprem.yaml"])
def test_cluster_configs_pass_rays_schema_and_install_the_package(name):
    from ray.autoscaler._private.util import fillout_defaults, validate_config

    config = _load(name)
    validate_config(fillout_defaults(copy.deepcopy(config)))  # the launcher's own checks, without SSH or a cloud
    mount = next(remote for remote, local in config["file_mounts"].items() if local == ".")
    assert any("pip install" in c and f"-e {mount}" in c for c in config["setup_commands"])
    assert config["head_node_type"] in config["available_node_types"]
    assert ".venv" in config["rsync_exclude"] and "cache" in config["rsync_exclude"]


def test_cloud_config_has_a_gpu_worker_type():
    config = _load("cluster.yaml")
    assert config["provider"]["type"] == "aws"
    gpu = [t for t in config["available_node_types"].values() if t["resources"].get("GPU", 0) >= 1]
    assert gpu and gpu[0]["max_workers"] >= 1


def test_onprem_variant_uses_the_local_provider():
    config = _load("cluster-onprem.yaml")
    assert config["provider"]["type"] == "local" and config["provider"]["worker_ips"]


def test_schema_rejects_a_broken_config():
    import jsonschema
    from ray.autoscaler._private.util import fillout_defaults, validate_config

    config = _load("cluster.yaml")
    config["available_node_types"]["gpu_worker"]["max_workers"] = "eight"
    with pytest.raises(jsonschema.ValidationError):
        validate_config(fillout_defaults(config))
