"""Mamba-1 selective scan on the CPU: compiled (numba) forward and backward kernels.

Per batch b, channel e and state n (Ā, B̄ as in Mamba's simplified ZOH):

    a_t = exp(Δ_t A_n),   h_t = a_t h_{t−1} + Δ_t x_t B_tn,   y_t = Σ_n C_tn h_tn + D_e x_t

Time runs in blocks of ``BLOCK`` steps. For each block the decays a = exp(Δ A) are computed
at once (B·BLOCK·N·E numbers: the products by a compiled kernel, the exp by NumPy's vectorised
loop; a scalar exp per element inside the recurrence was ~85 % of its time), then a compiled
kernel (numba) runs the recurrence over the block, carrying the state from block to block.
Layout: everything is (B, L, E) as the block produces it (no transposed copies), states
(N, E); the channels are the innermost, vectorised loop, so each step updates E·N independent
recurrences at once (one (b, e) recurrence at a time was bound by its latency: 2.5× slower
forward + backward at the quick size, 3.3× at ~1M parameters, measured).
Work items are (b, channel block): one block per row unless the batch is smaller than the
threads.

Forward. One pass over t per item; the state entering every chunk of K steps is kept
(``hk``: B·⌈L/K⌉·N·E numbers, 1/K of the full state history, which a reverse-mode autograd of
the same loop in PyTorch would hold at B·L·E·N).

Backward. Blocks from last to first, their decays recomputed as in the forward; per item,
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

    # Every inner loop runs over a 1-D slice from index 0: numba's multi-dimensional indexing
    # (negative-index wraparound on each index) kept these loops from vectorising (5.7× slower,
    # measured on the forward).

    @jit
    def forward(x, dt, a, Bm, Cm, D, K, s, groups, hs, y, hk):
        # Steps [s, s + a.shape[1]). x, dt, y: (Bt, L, E); a: (Bt, block, N, E) decays of the
        # block; Bm, Cm: (Bt, L, N); D: (E,); hs: (Bt, N, E) state in and out; hk: (Bt, nck,
        # N, E). Channels innermost: every loop over e is a vector loop of independent chains.
        Bt, L, E = x.shape
        N = a.shape[2]
        stop = min(L, s + a.shape[1])
        per = (E + groups - 1) // groups
        for j in numba.prange(Bt * groups):
            b = j // groups
            e0 = (j % groups) * per
            e1 = min(E, e0 + per)
            m = e1 - e0
            De = D[e0:e1]
            for t in range(s, stop):
                if t % K == 0:
                    hk[b, t // K, :, e0:e1] = hs[b, :, e0:e1]
                xt = x[b, t, e0:e1]
                dtt = dt[b, t, e0:e1]
                yt = y[b, t, e0:e1]
                for e in range(m):
                    yt[e] = De[e] * xt[e]
                for n in range(N):
                    bn = Bm[b, t, n]
                    cn = Cm[b, t, n]
                    h = hs[b, n, e0:e1]
                    at = a[b, t - s, n, e0:e1]
                    for e in range(m):
                        hn = at[e] * h[e] + dtt[e] * xt[e] * bn
                        h[e] = hn
                        yt[e] += cn * hn

    @jit
    def backward(x, dt, a, A, Bm, Cm, D, K, s, hk, g, groups, lam, dx, ddt, dA, dB_p, dC_p, dD):
        # Steps [s, s + a.shape[1]), s a multiple of K. x, dt, g, dx, ddt: (Bt, L, E); a: (Bt,
        # block, N, E); A: (N, E); lam: (Bt, N, E) adjoint state in and out; dA: (Bt, N, E)
        # and dD: (Bt, E) accumulated over blocks; dB_p, dC_p: (groups, Bt, L, N) one slice
        # per channel block.
        Bt, L, E = x.shape
        N = a.shape[2]
        stop = min(L, s + a.shape[1])
        per = (E + groups - 1) // groups
        for j in numba.prange(Bt * groups):
            b = j // groups
            grp = j % groups
            e0 = grp * per
            e1 = min(E, e0 + per)
            m = e1 - e0
            hbuf = np.empty((K + 1, N, m), dtype=a.dtype)  # row r: state before step t0 + r
            acc_dt = np.empty(m, dtype=a.dtype)
            acc_dx = np.empty(m, dtype=a.dtype)
            zero = a[0, 0, 0, 0] * np.float32(0)  # accumulators in the input's precision
            De = D[e0:e1]
            dDe = dD[b, e0:e1]
            for t0 in range(stop - 1 - (stop - 1 - s) % K, s - 1, -K):
                t1 = min(stop, t0 + K)
                hbuf[0] = hk[b, t0 // K, :, e0:e1]
                for t in range(t0, t1):  # recompute the chunk's states from its checkpoint
                    r = t - t0
                    xt = x[b, t, e0:e1]
                    dtt = dt[b, t, e0:e1]
                    for n in range(N):
                        bn = Bm[b, t, n]
                        at = a[b, t - s, n, e0:e1]
                        hp = hbuf[r, n]
                        hn = hbuf[r + 1, n]
                        for e in range(m):
                            hn[e] = at[e] * hp[e] + dtt[e] * xt[e] * bn
                for t in range(t1 - 1, t0 - 1, -1):
                    r = t - t0
                    xt = x[b, t, e0:e1]
                    dtt = dt[b, t, e0:e1]
                    gt = g[b, t, e0:e1]
                    for e in range(m):
                        dDe[e] += gt[e] * xt[e]
                        acc_dt[e] = zero
                        acc_dx[e] = zero
                    for n in range(N):
                        bn = Bm[b, t, n]
                        cn = Cm[b, t, n]
                        at = a[b, t - s, n, e0:e1]
                        An = A[n, e0:e1]
                        hp = hbuf[r, n]
                        hn = hbuf[r + 1, n]
                        ln_ = lam[b, n, e0:e1]
                        dAn = dA[b, n, e0:e1]
                        sum_c = zero
                        sum_b = zero
                        for e in range(m):
                            ln = ln_[e] + cn * gt[e]
                            ahp = at[e] * hp[e]
                            acc_dt[e] += ln * (An[e] * ahp + xt[e] * bn)
                            acc_dx[e] += ln * bn
                            dAn[e] += dtt[e] * ln * ahp
                            ln_[e] = ln * at[e]
                            sum_c += gt[e] * hn[e]
                            sum_b += ln * (dtt[e] * xt[e])
                        dC_p[grp, b, t, n] += sum_c
                        dB_p[grp, b, t, n] += sum_b
                    dxt = dx[b, t, e0:e1]
                    ddtt = ddt[b, t, e0:e1]
                    for e in range(m):
                        ddtt[e] = acc_dt[e]
                        dxt[e] = dtt[e] * acc_dx[e] + De[e] * gt[e]

    @jit
    def log_decays(dt, A, s, out):
        # out[b, t − s, n, e] = Δ_te A_ne for the block's steps; out: (Bt, block, N, E)
        Bt, L, E = dt.shape
        N = A.shape[0]
        steps = min(L, s + out.shape[1]) - s
        for i in numba.prange(Bt * steps):
            b = i // steps
            r = i % steps
            d = dt[b, s + r]
            for n in range(N):
                An = A[n]
                o = out[b, r, n]
                for e in range(E):
                    o[e] = d[e] * An[e]

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


def _blocks(L: int) -> range:
    return range(0, L, BLOCK)


def _groups(threads: int, Bt: int, E: int) -> int:
    """Channel blocks per batch row: enough (b, block) items to keep every thread busy when the
    batch is small, and at most one block per 16 channels (a block's vector loop stays long)."""
    return max(1, min(-(-E // 16), -(-threads // Bt)))


def _decays(dt: np.ndarray, A: np.ndarray, s: int, out: np.ndarray) -> np.ndarray:
    """exp(Δ_t A) for the block starting at step s, into ``out``: (Bt, block, N, E).

    The products in the compiled kernel, the exp by NumPy's SIMD loop (measured ~2× faster
    than torch's single-thread exp here, and far faster than a scalar exp in the kernel)."""
    a = out[:, : min(BLOCK, dt.shape[1] - s)]
    _kernels()[3](dt, A, s, a)
    return np.exp(a, out=a)


class _SelectiveScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, delta, A, B, C, D):
        # x, delta: (Bt, L, E); A: (E, N); B, C: (Bt, L, N); D: (E,)
        threads = _threads()
        _, fwd, _, _ = _use(threads)
        Bt, L, E = x.shape
        N = A.shape[1]
        x_, dt_, B_, C_, D_ = (t.detach().contiguous() for t in (x, delta, B, C, D))
        At = A.detach().t().contiguous()  # (N, E)
        y = torch.empty_like(x_)  # (Bt, L, E)
        hk = torch.empty(Bt, -(-L // CHECKPOINT), N, E, dtype=x.dtype)  # (Bt, nck, N, E)
        hs = torch.zeros(Bt, N, E, dtype=x.dtype)  # (Bt, N, E)
        groups = _groups(threads, Bt, E)
        xn, dtn, An = x_.numpy(), dt_.numpy(), At.numpy()
        rest = [t.numpy() for t in (hs, y, hk)]
        buf = np.empty((Bt, min(L, BLOCK), N, E), dtype=xn.dtype)
        for s in _blocks(L):
            a = _decays(dtn, An, s, buf)
            fwd(xn, dtn, a, B_.numpy(), C_.numpy(), D_.numpy(), CHECKPOINT, s, groups, *rest)
        ctx.save_for_backward(x_, dt_, At, B_, C_, D_, hk)
        return y  # (Bt, L, E)

    @staticmethod
    def backward(ctx, gy):
        threads = _threads()
        _, _, bwd, _ = _use(threads)
        x, dt, At, B, C, D, hk = ctx.saved_tensors
        Bt, L, E = x.shape
        N = At.shape[0]
        groups = _groups(threads, Bt, E)
        g = gy.contiguous()  # (Bt, L, E)
        dx = torch.empty_like(x)
        ddt = torch.empty_like(x)
        lam = torch.zeros(Bt, N, E, dtype=x.dtype)
        dA_p = torch.zeros(Bt, N, E, dtype=x.dtype)
        dB_p = torch.zeros(groups, Bt, L, N, dtype=x.dtype)
        dC_p = torch.zeros(groups, Bt, L, N, dtype=x.dtype)
        dD_p = torch.zeros(Bt, E, dtype=x.dtype)
        head = [t.numpy() for t in (x, dt)]
        mid = [t.numpy() for t in (At, B, C, D)]
        tail = [t.numpy() for t in (lam, dx, ddt, dA_p, dB_p, dC_p, dD_p)]
        buf = np.empty((Bt, min(L, BLOCK), N, E), dtype=head[0].dtype)
        for s in reversed(_blocks(L)):
            a = _decays(head[1], mid[0], s, buf)
            bwd(*head, a, *mid, CHECKPOINT, s, hk.numpy(), g.numpy(), groups, *tail)
        return (
            dx,  # (Bt, L, E)
            ddt,  # (Bt, L, E)
            dA_p.sum(0).t(),  # (E, N)
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
