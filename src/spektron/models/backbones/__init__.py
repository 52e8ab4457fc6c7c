"""Sequence backbones: each maps (B, L, d_model) → (B, L, d_model); see ``registry``."""
