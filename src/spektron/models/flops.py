"""FLOPs of one forward pass, counted on the same footing for every backbone.

``torch.utils.flop_counter.FlopCounterMode`` counts only matrix products, convolutions and
attention; FFTs, scans and elementwise work count 0 (and fused CUDA kernels, which are not aten
ops, are invisible), which flatters FFT- and scan-based backbones. Here a
``TorchDispatchMode`` sees every aten op and counts it by rule:

- matmul / conv / attention: PyTorch's own formulas (2 FLOPs per multiply-add; ×4 for complex
  operands); bias additions and attention's scale + softmax (6 per score) count as elementwise;
- FFT (Cooley–Tukey estimate): a complex transform of length N costs 5·N·log₂N, a real one
  (``_fft_r2c`` / ``_fft_c2r``) half of that, 2.5·N·log₂N; N is the product of the
  transformed lengths (N = the real signal length for r2c / c2r);
- elementwise (pointwise-tagged ops: add, mul, exp, gelu, softplus, where, clamp, ...):
  1 FLOP per output element; complex outputs count 2 (add, sub, ...), 6 (mul) or 11 (div);
- reductions (sum, mean, amax, ...) and cumulative ops (cumsum, cumprod): 1 per *input*
  element (var / std 3, norms 2); layer/group/batch norm and softmax: 5 per element;
- views, copies, padding, concatenation, indexing, tensor creation and random-number
  generation: 0 (data movement, not arithmetic);
- any other op: 1 per output element (a lower bound), listed in ``fallback_ops``.

Count on CPU, through the pure-PyTorch code path of each backbone (e.g. Mamba's ``mambapy``
scan): a fused CUDA kernel called from Python is no aten op and would be missed entirely.
Transcendental functions counting 1 FLOP follow the usual convention (fvcore, FlopCounterMode);
the numbers are for comparing architectures, not for predicting run times.
"""

from __future__ import annotations

import math
import warnings
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.flop_counter import flop_registry

aten = torch.ops.aten

# Matmul-type ops: PyTorch's formulas (shape-wrapped: called with tensors, out_val=...).
MATMUL_RULES: dict[Any, Callable[..., int]] = dict(flop_registry)
if hasattr(aten, "_scaled_dot_product_flash_attention_for_cpu"):
    # The CPU attention kernel is missing from PyTorch's table; same shapes, same formula.
    MATMUL_RULES[aten._scaled_dot_product_flash_attention_for_cpu] = flop_registry[
        aten._scaled_dot_product_flash_attention
    ]
SDPA_OPS = {k for k in MATMUL_RULES if "scaled_dot_product" in str(k) and "backward" not in str(k)}
BIAS_OPS = {aten.addmm, aten.baddbmm}
CONV_OPS = {aten.convolution, aten._convolution}
# Per-score elementwise cost of attention: scaling (1) + softmax (5).
SDPA_ELEMENTWISE_PER_SCORE = 6

# FFT: FLOPs per transform = factor · N · log2 N.
FFT_FACTOR = {"_fft_r2c": 2.5, "_fft_c2r": 2.5, "_fft_c2c": 5.0}

# Data movement, tensor creation and metadata: no arithmetic.
ZERO_COST = {
    "clone", "copy", "copy_", "_to_copy", "to", "contiguous", "lift_fresh", "lift_fresh_copy",
    "constant_pad_nd", "reflection_pad1d", "replication_pad1d", "cat", "stack", "flip", "roll",
    "repeat", "index", "index_select", "gather", "embedding", "masked_select",
    "empty", "empty_like", "empty_strided", "new_empty", "new_empty_strided",
    "zeros", "zeros_like", "new_zeros", "ones", "ones_like", "new_ones",
    "full", "full_like", "new_full", "fill", "fill_", "zero_", "scalar_tensor", "arange",
    "linspace", "logspace", "eye", "tril_indices", "triu_indices", "_local_scalar_dense",
    "detach", "alias", "resolve_conj", "resolve_neg", "slice_scatter", "select_scatter",
    "_unsafe_view", "view_as_real", "view_as_complex", "clone_", "set_", "resize_",
    "sym_size", "sym_stride", "sym_numel", "sym_storage_offset",
}  # fmt: skip
# FLOPs per element for ops whose cost is well above 1 (per input element).
PER_ELEMENT_COST = {
    "native_layer_norm": 5, "native_group_norm": 5, "native_batch_norm": 5,
    "_native_batch_norm_legit": 5, "_native_batch_norm_legit_no_training": 5,
    "_softmax": 5, "_log_softmax": 5, "native_dropout": 2,
    "cumsum": 1, "cumprod": 1, "logcumsumexp": 3, "cummax": 1, "cummin": 1,
}  # fmt: skip
# Reductions: FLOPs per input element (1 unless listed).
REDUCTION_COST = {"var": 3, "std": 3, "var_mean": 3, "std_mean": 3, "linalg_vector_norm": 2}
# Complex elementwise: real FLOPs per complex output element (2 unless listed).
COMPLEX_COST = {"mul": 6, "mul_": 6, "div": 11, "div_": 11}


def _tensors(tree: Any) -> list[torch.Tensor]:
    return [t for t in tree_flatten(tree)[0] if isinstance(t, torch.Tensor)]


def _numel(tree: Any) -> int:
    ts = _tensors(tree)
    return ts[0].numel() if ts else 0


def _is_view(func: Any) -> bool:
    returns = func._schema.returns
    info = returns[0].alias_info if returns else None
    return info is not None and not info.is_write


def _fft_flops(name: str, args: tuple, out: torch.Tensor) -> float:
    signal = out if name == "_fft_c2r" else args[0]  # the real side sets N for r2c / c2r
    dims = [d % signal.dim() for d in args[1]]
    n = math.prod(signal.shape[d] for d in dims)
    if n <= 1:
        return 0.0
    return FFT_FACTOR[name] * (signal.numel() // n) * n * math.log2(n)


class _FlopMode(TorchDispatchMode):
    """Counts every aten op by the rules in the module docstring."""

    def __init__(self) -> None:
        super().__init__()
        self.matmul = 0.0
        self.by_op: dict[str, float] = defaultdict(float)
        self.fallback_ops: set[str] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        packet = func._overloadpacket
        name = packet.__name__
        known = (
            packet in MATMUL_RULES
            or name in FFT_FACTOR
            or name in ZERO_COST
            or name in PER_ELEMENT_COST
            or _is_view(func)
            or torch.Tag.pointwise in func.tags
            or torch.Tag.reduction in func.tags
            or torch.Tag.nondeterministic_seeded in func.tags
        )
        if not known:
            # An unlisted composite op: count its parts, as FlopCounterMode does.
            with self:
                r = func.decompose(*args, **kwargs)
            if r is not NotImplemented:
                return r
        out = func(*args, **kwargs)
        mm, other = self._rule(func, packet, name, args, kwargs, out, known)
        if mm or other:
            self.matmul += mm
            self.by_op[name] += mm + other
        return out

    def _rule(self, func, packet, name, args, kwargs, out, known) -> tuple[float, float]:
        """(matmul FLOPs, other FLOPs) of one call."""
        if packet in MATMUL_RULES:
            mm = MATMUL_RULES[packet](*args, **kwargs, out_val=out)
            if any(t.is_complex() for t in _tensors(args)):
                mm *= 4  # a complex multiply-add is 4 real multiply-adds
            other = 0
            if packet in BIAS_OPS or (packet in CONV_OPS and args[2] is not None):
                other = _numel(out)
            elif packet in SDPA_OPS:
                q, k = args[0], args[1]
                other = SDPA_ELEMENTWISE_PER_SCORE * (q.numel() // q.shape[-1]) * k.shape[-2]
            return float(mm), float(other)
        if name in FFT_FACTOR:
            return 0.0, _fft_flops(name, args, out)
        if name in ZERO_COST or _is_view(func):
            return 0.0, 0.0
        if name in PER_ELEMENT_COST:
            return 0.0, float(PER_ELEMENT_COST[name] * _numel(args))
        if torch.Tag.reduction in func.tags:
            return 0.0, float(REDUCTION_COST.get(name, 1) * _numel(args))
        if torch.Tag.nondeterministic_seeded in func.tags:
            return 0.0, 0.0  # random-number generation
        n = _numel(out)
        if torch.Tag.pointwise in func.tags:
            if any(t.is_complex() for t in _tensors(out)):
                return 0.0, float(COMPLEX_COST.get(name, 2) * n)
            return 0.0, float(n)
        self.fallback_ops.add(name)
        return 0.0, float(n)

    def result(self) -> dict[str, Any]:
        by_op = {k: round(v) for k, v in sorted(self.by_op.items(), key=lambda kv: -kv[1])}
        return {
            "matmul": round(self.matmul),
            "total": sum(by_op.values()),
            "by_op": by_op,
            "fallback_ops": sorted(self.fallback_ops),
        }


def count_flops(model_or_fn: nn.Module | Callable[..., Any], *inputs: Any) -> dict[str, Any]:
    """FLOPs of ``model_or_fn(*inputs)``: one inference forward pass (no grad; a module is put
    in eval mode for the count and restored afterwards).

    Returns ``{"matmul": int, "total": int, "by_op": {aten op: FLOPs}, "fallback_ops": [...]}``;
    ``matmul`` is what ``FlopCounterMode`` would report, ``total`` adds FFTs, scans,
    elementwise and reductions, ``fallback_ops`` lists ops counted by the 1-per-output-element
    fallback.
    """
    if any(t.is_cuda for t in _tensors(inputs)):
        warnings.warn(
            "count_flops on CUDA: fused kernels (e.g. mamba_ssm's selective scan) are not aten "
            "ops and are not counted; count on CPU for comparable numbers",
            RuntimeWarning,
            stacklevel=2,
        )
    module = model_or_fn if isinstance(model_or_fn, nn.Module) else None
    was_training = module.training if module is not None else False
    if module is not None:
        module.eval()
    from spektron.models.backbones.selective_scan import pytorch_ops_only

    mode = _FlopMode()
    try:
        # Compiled kernels are no aten ops: Mamba's scan is counted through PyTorch's.
        with torch.no_grad(), pytorch_ops_only(), mode:
            model_or_fn(*inputs)
    finally:
        if module is not None:
            module.train(was_training)
    return mode.result()
