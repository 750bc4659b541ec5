"""A small random transformers ``CLIPModel`` folder, as ``save_pretrained`` writes it, with a CLIP tokenizer in the
real format (``tokenizer.json``) built from open_clip's own BPE vocabulary (so its ids are open_clip's)."""

from __future__ import annotations

from pathlib import Path

import open_clip
import torch


def write_tokenizer(folder: Path) -> None:
    import transformers

    simple = open_clip.SimpleTokenizer()
    merges = [tuple(pair) for pair, _ in sorted(simple.bpe_ranks.items(), key=lambda kv: kv[1])]
    names = {"<start_of_text>": "<|startoftext|>", "<end_of_text>": "<|endoftext|>"}  # open_clip's names -> CLIP's
    vocab = {names.get(k, k): v for k, v in simple.encoder.items()}
    transformers.CLIPTokenizer(vocab=vocab, merges=merges).save_pretrained(str(folder))


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
    write_tokenizer(folder)
    return folder
