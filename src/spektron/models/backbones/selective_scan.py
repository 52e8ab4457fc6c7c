"""Mamba-1 selective scan on the CPU: compiled (numba) forward and backward kernels.

Per batch b, channel e and state n (Ā, B̄ as in Mamba's simplified ZOH):

    a_t = exp(Δ_t A_n),   h_t = a_t h_{t−1} + Δ_t x_t B_tn,   y_t = Σ_n C_tn h_tn + D_e x_t

Forward. One pass over t per (b, e), the N states in registers; the state entering every
chunk of K steps is kept (``hk``: B·E·⌈L/K⌉·N numbers, 1/K of the full state history, which
a reverse-mode autograd of the same loop in PyTorch would hold at B·L·E·N).

Backward. Per (b, e), chunks from last to first: the chunk's states are recomputed from its
checkpoint (the same operations in the same order as the forward, so bit-identical), then
t runs backwards with the adjoint state

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

import functools
import math

import numpy as np
import torch

# Steps between saved states. The backward recomputes at most K states per (b, e) and holds
# them (and their decays) in two K×N scratch arrays.
CHECKPOINT = 32


@functools.lru_cache(maxsize=1)
def _kernels():
    try:
        import numba
    except ImportError as e:  # a declared dependency; only a broken install lands here
        raise ImportError("the Mamba CPU scan needs numba: pip install numba") from e

    @numba.njit(parallel=True, cache=True, nogil=True)
    def forward(x, dt, A, Bm, Cm, D, K, y, hk):
        # x, dt, y: (Bt, E, L); A: (E, N); Bm, Cm: (Bt, L, N); D: (E,); hk: (Bt, E, nck, N)
        Bt, E, L = x.shape
        N = A.shape[1]
        for i in numba.prange(Bt * E):
            b = i // E
            e = i % E
            h = np.zeros_like(A[0])
            for t in range(L):
                if t % K == 0:
                    hk[b, e, t // K, :] = h
                d = dt[b, e, t]
                xt = x[b, e, t]
                dx = d * xt
                acc = 0.0
                for n in range(N):
                    h[n] = math.exp(d * A[e, n]) * h[n] + dx * Bm[b, t, n]
                    acc += Cm[b, t, n] * h[n]
                y[b, e, t] = acc + D[e] * xt

    @numba.njit(parallel=True, cache=True, nogil=True)
    def backward(x, dt, A, Bm, Cm, D, K, hk, g, groups, dx, ddt, dA_p, dB_p, dC_p, dD_p):
        # g, dx, ddt: (Bt, E, L); dA_p: (Bt, E, N); dB_p, dC_p: (groups, Bt, L, N); dD_p: (Bt, E)
        Bt, E, L = x.shape
        N = A.shape[1]
        nck = hk.shape[2]
        per = (E + groups - 1) // groups
        for j in numba.prange(Bt * groups):
            b = j // groups
            grp = j % groups
            hbuf = np.empty((K, N), dtype=A.dtype)
            abuf = np.empty((K, N), dtype=A.dtype)
            lam = np.empty_like(A[0])
            dA = np.empty_like(A[0])
            for e in range(grp * per, min(E, (grp + 1) * per)):
                lam[:] = 0.0
                dA[:] = 0.0
                dD = 0.0
                for k in range(nck - 1, -1, -1):
                    t0 = k * K
                    t1 = min(L, t0 + K)
                    for n in range(N):  # recompute the chunk's states from its checkpoint
                        hbuf[0, n] = hk[b, e, k, n]
                    for t in range(t0, t1):
                        d = dt[b, e, t]
                        dxt = d * x[b, e, t]
                        r = t - t0
                        for n in range(N):
                            a = math.exp(d * A[e, n])
                            hp = hbuf[r - 1, n] if r > 0 else hk[b, e, k, n]
                            abuf[r, n] = a
                            hbuf[r, n] = a * hp + dxt * Bm[b, t, n]
                    for t in range(t1 - 1, t0 - 1, -1):
                        r = t - t0
                        gt = g[b, e, t]
                        d = dt[b, e, t]
                        xt = x[b, e, t]
                        dD += gt * xt
                        acc_dt = 0.0
                        acc_dx = D[e] * gt
                        for n in range(N):
                            hp = hbuf[r - 1, n] if r > 0 else hk[b, e, k, n]
                            a = abuf[r, n]
                            ln = lam[n] + Cm[b, t, n] * gt
                            dC_p[grp, b, t, n] += gt * hbuf[r, n]
                            acc_dt += ln * (A[e, n] * a * hp + xt * Bm[b, t, n])
                            dA[n] += ln * d * a * hp
                            dB_p[grp, b, t, n] += ln * d * xt
                            acc_dx += ln * d * Bm[b, t, n]
                            lam[n] = ln * a
                        ddt[b, e, t] = acc_dt
                        dx[b, e, t] = acc_dx
                dA_p[b, e, :] = dA
                dD_p[b, e] = dD

    return numba, forward, backward


def _threads(numba) -> int:
    return max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS))


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().contiguous().numpy()


class _SelectiveScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, delta, A, B, C, D):
        # x, delta: (Bt, L, E); A: (E, N); B, C: (Bt, L, N); D: (E,)
        numba, fwd, _ = _kernels()
        Bt, L, E = x.shape
        N = A.shape[1]
        xt = x.detach().transpose(1, 2).contiguous()  # (Bt, E, L)
        dtt = delta.detach().transpose(1, 2).contiguous()  # (Bt, E, L)
        y = torch.empty_like(xt)  # (Bt, E, L)
        hk = torch.empty(Bt, E, -(-L // CHECKPOINT), N, dtype=x.dtype)  # (Bt, E, nck, N)
        numba.set_num_threads(_threads(numba))
        fwd(xt.numpy(), dtt.numpy(), _np(A), _np(B), _np(C), _np(D), CHECKPOINT, y.numpy(),
            hk.numpy())  # fmt: skip
        ctx.save_for_backward(xt, dtt, A, B, C, D, hk)
        return y.transpose(1, 2)  # (Bt, L, E)

    @staticmethod
    def backward(ctx, gy):
        numba, _, bwd = _kernels()
        xt, dtt, A, B, C, D, hk = ctx.saved_tensors
        Bt, E, L = xt.shape
        N = A.shape[1]
        threads = _threads(numba)
        # Enough channel blocks to keep every thread busy when the batch is small.
        groups = max(1, min(E, -(-threads // Bt)))
        g = gy.transpose(1, 2).contiguous()  # (Bt, E, L)
        dx = torch.empty_like(xt)
        ddt = torch.empty_like(xt)
        dA_p = torch.empty(Bt, E, N, dtype=xt.dtype)
        dB_p = torch.zeros(groups, Bt, L, N, dtype=xt.dtype)
        dC_p = torch.zeros(groups, Bt, L, N, dtype=xt.dtype)
        dD_p = torch.empty(Bt, E, dtype=xt.dtype)
        numba.set_num_threads(threads)
        bwd(xt.numpy(), dtt.numpy(), _np(A), _np(B), _np(C), _np(D), CHECKPOINT, hk.numpy(),
            g.numpy(), groups, dx.numpy(), ddt.numpy(), dA_p.numpy(), dB_p.numpy(),
            dC_p.numpy(), dD_p.numpy())  # fmt: skip
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
