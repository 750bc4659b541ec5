"""open_clip loading, the head-level attention module, head names and masks."""

from ccs_dist.models.head_attention import HeadAttention, install_head_attention
from ccs_dist.core.heads import head_name, parse_heads, resolve_layers
from ccs_dist.models.loading import LoadedModel, load_model

__all__ = ["HeadAttention", "LoadedModel", "head_name", "install_head_attention", "load_model", "parse_heads", "resolve_layers"]
