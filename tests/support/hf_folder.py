"""A small random transformers ``CLIPModel`` folder, as ``save_pretrained`` writes it, with a CLIP tokenizer in the
real format (``tokenizer.json``) built from open_clip's own BPE vocabulary (so its ids are open_clip's)."""

from __future__ import annotations

from pathlib import Path

import torch

from ccs_dist.models.hf_clip import save_open_clip_tokenizer


def write_hf_clip(folder: Path, seed: int = 0) -> Path:
    """A 3-layer, 4-head, 32-px CLIPModel with every parameter perturbed (zero-initialised biases and unit norms
    would hide a missing term), saved with its tokenizer in ``folder``."""
    import transformers

    cfg = transformers.CLIPConfig(
        text_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                         max_position_embeddings=77),
        vision_config=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4,
                           image_size=32, patch_size=8),
        projection_dim=24,
    )
    torch.manual_seed(seed)
    model = transformers.CLIPModel(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    model.save_pretrained(str(folder))
    save_open_clip_tokenizer(folder)
    return folder
