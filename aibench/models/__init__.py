"""Models: the compact Llama-family decoder (llama.py), its named shapes (config.py), weights
from a seed or a Hugging Face checkpoint (loader.py) and size arithmetic (memory.py).

Importing this package is cheap and side-effect free (safetensors is imported on first load).
"""

from __future__ import annotations

from aibench.models.config import CONFIGS, ModelArgs, RopeScaling
from aibench.models.llama import Transformer
from aibench.models.loader import from_pretrained, random_model
from aibench.models.memory import ensure_fits, estimate_bytes, kv_cache_bytes, param_count, weight_bytes
from aibench.models.reference import reference_logits

__all__ = [
    "CONFIGS",
    "ModelArgs",
    "RopeScaling",
    "Transformer",
    "ensure_fits",
    "estimate_bytes",
    "from_pretrained",
    "kv_cache_bytes",
    "param_count",
    "random_model",
    "reference_logits",
    "weight_bytes",
]
