"""ccs-plant training: bit-for-bit reproducible in its seed, and its planting shows in eta^2 against a control."""

from __future__ import annotations

import hashlib

import numpy as np
import torch

from ccs_dist.toy.plan import PLAN
from ccs_dist.toy.plant_loss import batch_eta2
from ccs_dist.toy.plant_train import PlantConfig, save_fp16, train_plant
from ccs_dist.toy.plant_truth import eta2_table, head_contributions, held_out_scenes, measures_as_planted
from ccs_dist.models.loading import BUNDLED, verify_bundled
from ccs_dist.toy.train import build_model


def _digest(config: PlantConfig, tmp_path) -> str:
    return save_fp16(train_plant(config).state_dict, tmp_path / f"w{config.seed}{config.plant}.safetensors")


def test_same_seed_same_bits_other_seed_other_bits(tmp_path):
    config = PlantConfig(steps=2, batch_size=16, warmup=1)
    first = _digest(config, tmp_path)
    assert _digest(config, tmp_path / "..") == first
    assert _digest(PlantConfig(steps=2, batch_size=16, warmup=1, seed=1), tmp_path) != first
    assert hashlib.sha256((tmp_path / "w0True.safetensors").read_bytes()).hexdigest() == first


def test_batch_eta2_is_one_for_a_function_of_the_label_and_near_zero_for_noise():
    labels = torch.arange(400) % 4
    codes = torch.randn(4, 8, dtype=torch.float64)
    assert abs(float(batch_eta2(codes[labels], labels)) - 1) < 1e-9
    assert float(batch_eta2(torch.randn(400, 8, dtype=torch.float64), labels)) < 0.05


def test_a_planted_head_beats_the_control_and_a_permuted_label_does_not(tmp_path):
    steps = dict(steps=120, batch_size=64, warmup=10, lr=3e-3)
    planted, control = train_plant(PlantConfig(**steps)), train_plant(PlantConfig(plant=False, **steps))
    scenes, images = held_out_scenes(256)
    tables = {}
    for name, result in (("planted", planted), ("control", control)):
        model, _ = build_model("ccs-plant", 0)
        model.load_state_dict(result.state_dict)
        model.eval()
        x = head_contributions(model, images)
        tables[name] = eta2_table(name, x, scenes)
        tables[name + "_null"] = eta2_table(name, x, scenes, permute=np.random.default_rng(0))
    head = next(h for h in PLAN if (h.layer, h.head) == (0, 2))  # mono position, layer 0
    def eta(name):
        t = tables[name]
        return dict(zip(t.filter((t["layer"] == 0) & (t["head"] == 2))["factor"], t.filter((t["layer"] == 0) & (t["head"] == 2))["eta2"]))
    assert eta("planted")["position"] > eta("control")["position"] + 0.2
    assert eta("planted_null")["position"] < eta("control")["position"] + 0.2
    assert measures_as_planted(head, eta("planted"), eta("control"))
    assert not measures_as_planted(head, eta("planted_null"), eta("control"))


def test_bundled_plant_weights_match_their_pins_and_stay_small():
    plant = [b for b in BUNDLED if b.arch == "ccs-plant"]
    assert {b.tag for b in plant} == {f"{kind}_s{seed}" for kind in ("plant", "contrastive") for seed in (0, 1, 2)}
    for b in plant:
        verify_bundled(b)
        assert hashlib.sha256(b.path.read_bytes()).hexdigest() == b.sha256
    assert sum(b.path.stat().st_size for b in plant) <= 8_000_000
