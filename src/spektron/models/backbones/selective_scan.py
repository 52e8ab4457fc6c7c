"""Mamba-1 selective scan on the CPU: compiled (numba) forward and backward kernels.

Per batch b, channel e and state n (Ā, B̄ as in Mamba's simplified ZOH):

    a_t = exp(Δ_t A_n),   h_t = a_t h_{t−1} + Δ_t x_t B_tn,   y_t = Σ_n C_tn h_tn + D_e x_t

Time runs in blocks of ``BLOCK`` steps. For each block the decays a = exp(Δ A) are computed
at once (B·E·BLOCK·N numbers: the products by a compiled kernel, the exp by NumPy's vectorised
loop; a scalar exp per element inside the recurrence was ~85 % of its time), then a compiled
kernel (numba) runs the recurrence over the block for every (b, e) in parallel, carrying the
state from block to block.

Forward. One pass over t per (b, e); the state entering every chunk of K steps is kept
(``hk``: B·E·⌈L/K⌉·N numbers, 1/K of the full state history, which a reverse-mode autograd of
the same loop in PyTorch would hold at B·L·E·N).

Backward. Blocks from last to first, their decays recomputed as in the forward; per (b, e),
chunks from last to first: the chunk's states are recomputed from its checkpoint (the same
operations in the same order as the forward, so bit-identical), then t runs backwards with
the adjoint state (carried from block to block)

    λ_t = C_t g_t + a_{t+1} λ_{t+1}               (g_t = ∂ℓ/∂y_t)
    ∂ℓ/∂Δ_t = Σ_n λ_tn (A_n a_tn h_{t−1,n} + x_t B_tn)
    ∂ℓ/∂x_t = Σ_n λ_tn Δ_t B_tn + D_e g_t
    ∂ℓ/∂A_n = Σ_{b,t} λ_tn Δ_t a_tn h_{t−1,n}
    ∂ℓ/∂B_tn = Σ_e λ_tn Δ_t x_t,   ∂ℓ/∂C_tn = Σ_e g_t h_tn,   ∂ℓ/∂D_e = Σ_{b,t} g_t x_t

B and C are shared by all channels, so their gradients are sums over e: the channels are
split into ``groups`` blocks, each block accumulates into its own slice of a partial buffer
and the slices are summed afterwards (no two threads write the same number). The same for
∂ℓ/∂A and ∂ℓ/∂D, summed over b.

Both kernels run on as many threads as torch uses (``torch.get_num_threads()``), capped at
numba's pool size. They are compiled on first use and cached on disk by numba.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

# Steps between saved states. The backward recomputes at most K states per (b, e) and holds
# them in a (K + 1)×N scratch array.
CHECKPOINT = 32
# Steps per block (a multiple of CHECKPOINT): the decays of one block, B·E·BLOCK·N numbers,
# are computed at once (12.6 MB in float32 at B = 16, E = 384, N = 8).
BLOCK = 64
# Reassociation lets the compiler vectorise the sums over states; no flags that assume
# finite inputs, so NaN/Inf propagate as in PyTorch.
FASTMATH = {"reassoc", "contract", "nsz", "arcp"}


@functools.lru_cache(maxsize=1)
def _kernels():
    """The compiled kernels. numba's thread pool is sized to torch's thread count when numba
    is first imported here (unless NUMBA_NUM_THREADS is set): a larger OpenMP pool keeps a
    thread spinning between calls, measured at up to a core per process, which slowed two
    one-thread training processes side by side several-fold. A serial build avoids that
    too but was slower (its loops did not vectorise), so the build is always parallel."""
    import os
    import sys

    if "numba" not in sys.modules and "NUMBA_NUM_THREADS" not in os.environ:
        os.environ["NUMBA_NUM_THREADS"] = str(max(1, torch.get_num_threads()))
    try:
        import numba
    except ImportError as e:  # a declared dependency; only a broken install lands here
        raise ImportError("the Mamba CPU scan needs numba: pip install numba") from e

    jit = numba.njit(parallel=True, cache=True, nogil=True, fastmath=FASTMATH)

    @jit
    def forward(x, dt, a, Bm, Cm, D, K, s, hs, y, hk):
        # Steps [s, s + a.shape[2]). x, dt, y: (Bt, E, L); a: (Bt, E, block, N) decays of the
        # block; Bm, Cm: (Bt, L, N); D: (E,); hs: (Bt, E, N) state in and out; hk: (Bt, E, nck, N)
        Bt, E, L = x.shape
        N = a.shape[3]
        stop = min(L, s + a.shape[2])
        for i in numba.prange(Bt * E):
            b = i // E
            e = i % E
            h = hs[b, e]
            zero = a[0, 0, 0, 0] * np.float32(0)  # accumulators in the input's precision
            for t in range(s, stop):
                if t % K == 0:
                    hk[b, e, t // K, :] = h
                d = dt[b, e, t]
                xt = x[b, e, t]
                dx = d * xt
                acc = zero
                for n in range(N):
                    h[n] = a[b, e, t - s, n] * h[n] + dx * Bm[b, t, n]
                    acc += Cm[b, t, n] * h[n]
                y[b, e, t] = acc + D[e] * xt

    @jit
    def backward(x, dt, a, A, Bm, Cm, D, K, s, hk, g, groups, lam, dx, ddt, dA, dB_p, dC_p, dD):
        # Steps [s, s + a.shape[2]), s a multiple of K. g, dx, ddt: (Bt, E, L); lam: (Bt, E, N)
        # adjoint state in and out; dA: (Bt, E, N) and dD: (Bt, E) accumulated over blocks;
        # dB_p, dC_p: (groups, Bt, L, N) one slice per channel block.
        Bt, E, L = x.shape
        N = a.shape[3]
        stop = min(L, s + a.shape[2])
        per = (E + groups - 1) // groups
        for j in numba.prange(Bt * groups):
            b = j // groups
            grp = j % groups
            hbuf = np.empty((K + 1, N), dtype=a.dtype)  # row r: state before step t0 + r
            lnow = np.empty(N, dtype=a.dtype)
            zero = a[0, 0, 0, 0] * np.float32(0)
            for e in range(grp * per, min(E, (grp + 1) * per)):
                ln_ = lam[b, e]
                dA_ = dA[b, e]
                dD_ = zero
                for t0 in range(stop - 1 - (stop - 1 - s) % K, s - 1, -K):
                    t1 = min(stop, t0 + K)
                    k = t0 // K
                    hbuf[0] = hk[b, e, k]
                    for t in range(t0, t1):  # recompute the chunk's states from its checkpoint
                        dxt = dt[b, e, t] * x[b, e, t]
                        r = t - t0
                        for n in range(N):
                            hbuf[r + 1, n] = a[b, e, t - s, n] * hbuf[r, n] + dxt * Bm[b, t, n]
                    for t in range(t1 - 1, t0 - 1, -1):
                        r = t - t0
                        gt = g[b, e, t]
                        d = dt[b, e, t]
                        xt = x[b, e, t]
                        dD_ += gt * xt
                        acc_dt = zero
                        acc_dx = zero
                        # Two loops over n, each touching few arrays, so that both vectorise.
                        for n in range(N):
                            ln = ln_[n] + Cm[b, t, n] * gt
                            lnow[n] = ln
                            ahp = a[b, e, t - s, n] * hbuf[r, n]
                            acc_dt += ln * (A[e, n] * ahp + xt * Bm[b, t, n])
                            acc_dx += ln * Bm[b, t, n]
                            dA_[n] += d * ln * ahp
                            ln_[n] = ln * a[b, e, t - s, n]
                        dxt = d * xt
                        for n in range(N):
                            dC_p[grp, b, t, n] += gt * hbuf[r + 1, n]
                            dB_p[grp, b, t, n] += lnow[n] * dxt
                        ddt[b, e, t] = acc_dt
                        dx[b, e, t] = d * acc_dx + D[e] * gt
                dD[b, e] += dD_

    @jit
    def log_decays(dt, A, s, out):
        # out[b, e, t − s, n] = Δ_t A_n for the block's steps; out: (Bt, E, block, N)
        Bt, E, L = dt.shape
        N = A.shape[1]
        stop = min(L, s + out.shape[2])
        for i in numba.prange(Bt * E):
            b = i // E
            e = i % E
            for t in range(s, stop):
                d = dt[b, e, t]
                for n in range(N):
                    out[b, e, t - s, n] = d * A[e, n]

    return numba, forward, backward, log_decays


_enabled = True


def enabled() -> bool:
    """Whether Mamba may use the compiled scan (False inside :func:`pytorch_ops_only`)."""
    return _enabled


@contextlib.contextmanager
def pytorch_ops_only() -> Iterator[None]:
    """Within: Mamba runs its scan with PyTorch ops (mambapy's parallel scan), e.g. so that a
    FLOP counter that sees aten ops counts it."""
    global _enabled
    before, _enabled = _enabled, False
    try:
        yield
    finally:
        _enabled = before


def _threads() -> int:
    return max(1, torch.get_num_threads())


def _use(threads: int) -> tuple[Any, ...]:
    """The kernels, numba's pool set to ``threads`` (capped at its size)."""
    kernels = _kernels()
    numba = kernels[0]
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    return kernels


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().contiguous().numpy()


def _blocks(L: int) -> range:
    return range(0, L, BLOCK)


def _channels_first(t: torch.Tensor) -> torch.Tensor:
    """(Bt, L, E) → a contiguous (Bt, E, L) copy (a view when already laid out so)."""
    return t.detach().transpose(1, 2).contiguous()


def _decays(dt: np.ndarray, A: np.ndarray, s: int, out: np.ndarray) -> np.ndarray:
    """exp(Δ_t A) for the block starting at step s, into ``out``: (Bt, E, block, N).

    The products in the compiled kernel, the exp by NumPy's SIMD loop (measured ~2× faster
    than torch's single-thread exp here, and far faster than a scalar exp in the kernel)."""
    a = out[:, :, : min(BLOCK, dt.shape[2] - s)]
    _kernels()[3](dt, A, s, a)
    return np.exp(a, out=a)


class _SelectiveScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, delta, A, B, C, D):
        # x, delta: (Bt, L, E); A: (E, N); B, C: (Bt, L, N); D: (E,)
        _, fwd, _, _ = _use(_threads())
        Bt, L, E = x.shape
        N = A.shape[1]
        xt, dtt = _channels_first(x), _channels_first(delta)  # (Bt, E, L) each
        A_, B_, C_, D_ = (t.detach().contiguous() for t in (A, B, C, D))
        y = torch.empty_like(xt)  # (Bt, E, L)
        hk = torch.empty(Bt, E, -(-L // CHECKPOINT), N, dtype=x.dtype)  # (Bt, E, nck, N)
        hs = torch.zeros(Bt, E, N, dtype=x.dtype)  # (Bt, E, N)
        arrays = [t.numpy() for t in (xt, dtt, B_, C_, D_, hs, y, hk)]
        buf = np.empty((Bt, E, min(L, BLOCK), N), dtype=arrays[0].dtype)
        for s in _blocks(L):
            a = _decays(arrays[1], A_.numpy(), s, buf)
            fwd(arrays[0], arrays[1], a, *arrays[2:5], CHECKPOINT, s, *arrays[5:])
        # The inputs as given (autograd holds them for the surrounding ops anyway), not their
        # transposed copies: the backward transposes again rather than keep 2·Bt·L·E more.
        ctx.save_for_backward(x, delta, A_, B_, C_, D_, hk)
        return y.transpose(1, 2)  # (Bt, L, E)

    @staticmethod
    def backward(ctx, gy):
        threads = _threads()
        _, _, bwd, _ = _use(threads)
        x, delta, A, B, C, D, hk = ctx.saved_tensors
        xt, dtt = _channels_first(x), _channels_first(delta)  # (Bt, E, L) each
        Bt, E, L = xt.shape
        N = A.shape[1]
        # Enough channel blocks to keep every thread busy when the batch is small.
        groups = max(1, min(E, -(-threads // Bt)))
        g = _channels_first(gy)  # (Bt, E, L)
        dx = torch.empty_like(xt)
        ddt = torch.empty_like(xt)
        lam = torch.zeros(Bt, E, N, dtype=xt.dtype)
        dA_p = torch.zeros(Bt, E, N, dtype=xt.dtype)
        dB_p = torch.zeros(groups, Bt, L, N, dtype=xt.dtype)
        dC_p = torch.zeros(groups, Bt, L, N, dtype=xt.dtype)
        dD_p = torch.zeros(Bt, E, dtype=xt.dtype)
        head = [t.numpy() for t in (xt, dtt)]
        mid = [t.numpy() for t in (A, B, C, D)]
        tail = [t.numpy() for t in (lam, dx, ddt, dA_p, dB_p, dC_p, dD_p)]
        buf = np.empty((Bt, E, min(L, BLOCK), N), dtype=head[0].dtype)
        for s in reversed(_blocks(L)):
            a = _decays(head[1], mid[0], s, buf)
            bwd(*head, a, *mid, CHECKPOINT, s, hk.numpy(), g.numpy(), groups, *tail)
        return (
            dx.transpose(1, 2),  # (Bt, L, E)
            ddt.transpose(1, 2),  # (Bt, L, E)
            dA_p.sum(0),  # (E, N)
            dB_p.sum(0),  # (Bt, L, N)
            dC_p.sum(0),  # (Bt, L, N)
            dD_p.sum(0),  # (E,)
        )


def selective_scan(x, delta, A, B, C, D) -> torch.Tensor:
    """y = selective scan of x (see the module docstring); CPU tensors, float32 or float64.

    x, delta: (Bt, L, E) with Δ already positive (after softplus); A: (E, N); B, C: (Bt, L, N);
    D: (E,). Returns y: (Bt, L, E).
    """
    if x.device.type != "cpu":
        raise ValueError(f"the compiled selective scan runs on the CPU, got {x.device}")
    dtype = x.dtype
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"the compiled selective scan needs float32 or float64, got {dtype}")
    args = [t.to(dtype) for t in (x, delta, A, B, C, D)]
    return _SelectiveScan.apply(*args)
