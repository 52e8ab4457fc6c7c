"""D-LinOSS: compute modes against the sequential reference, parameterisation edges, LinOSS
special cases, transfer functions, and the block/backbone contract."""

from __future__ import annotations

import functools
import math

import pytest
import torch

from spektron.errors import ConfigError
from spektron.models.backbones.dlinoss import (
    AUTO_MODE,
    DLinOSSBackbone,
    DLinOSSConfig,
    DLinOSSCore,
    DLinOSSLayer,
    DLinOSSSigmoidBackbone,
    DLinOSSSigmoidConfig,
    _DampedChebyshev,
    clamp_interval,
    dlinoss_kernel,
    resolve_mode,
    ssm_fft,
    ssm_recurrent,
    ssm_scan,
)
from spektron.models.registry import build_backbone, count_parameters, make_backbone_config

MODES = ("recurrent", "scan", "fft", "chunk")
LENGTHS = (1, 7, 64, 100, 257)
H, P = 4, 8


def make_core(h: int = H, p: int = P, seed: int = 0, cls=DLinOSSConfig, **cfg) -> DLinOSSCore:
    torch.manual_seed(seed)
    return DLinOSSCore(h, cls(d_model=h, n_oscillators=p, **cfg))


def set_raw(core: DLinOSSCore, dt_raw, g_raw, a_raw) -> None:
    with torch.no_grad():
        for prm, val in ((core.dt_raw, dt_raw), (core.g_raw, g_raw), (core.a_raw, a_raw)):
            prm.copy_(torch.as_tensor(val, dtype=prm.dtype))


def ring_raw(core: DLinOSSCore, r: float, theta: float, dt_raw: float = 0.0) -> tuple:
    """Raw (dt, g, a) giving eigenvalues r·e^{±iθ} (before the clamp)."""
    cfg = core.cfg
    dt = cfg.dt_min + (cfg.dt_max - cfg.dt_min) / (1 + math.exp(-dt_raw))
    g = (1 - r**2) / (dt * r**2)
    a = (1 - 2 * r * math.cos(theta) + r**2) / (dt**2 * r**2)
    g_raw = math.log(math.expm1(g - cfg.g_min))
    return dt_raw, g_raw, a


def boundary_core(dtype=torch.float64, cls=DLinOSSConfig) -> DLinOSSCore:
    """One oscillator per edge of the parameterisation (P = 8)."""
    core = make_core(cls=cls)
    big = 1e4
    rows = [
        (60.0, -60.0, big),  # dt = dt_max, g = g_min, a beyond hi → hi(1 − ε): θ near π
        (-60.0, -60.0, -big),  # dt = dt_min, g = g_min, a beyond lo → lo(1 + ε): |λ| ≈ 1, θ ≈ 0
        (0.0, big, 0.0),  # g at its cap (|λ| = ε), a below lo
        (60.0, big, big),  # dt_max, g cap, a beyond hi
        ring_raw(core, 0.999, 1e-4),  # θ near 0
        ring_raw(core, 0.5, math.pi - 1e-4, dt_raw=-3.0),  # θ near π
        (-60.0, -60.0, big),  # dt_min, g_min, a = hi(1 − ε) ≈ 4/dt²: λ near −1
        (0.3, -1.0, 0.0),  # placeholder: a exactly on lo(1 + ε), set below
    ]
    dt_raw, g_raw, a_raw = (list(c) for c in zip(*rows, strict=True))
    set_raw(core, dt_raw, g_raw, a_raw)
    core.to(dtype)
    with torch.no_grad():  # exactly on the clamp's lower end, in this dtype
        dt, g, _ = core.dynamics()
        core.a_raw[7] = ((g / (torch.sqrt(1 + dt * g) + 1)) ** 2 * (1 + core.cfg.clamp_eps))[7]
    return core


def random_core(dtype=torch.float64, seed: int = 1, cls=DLinOSSConfig) -> DLinOSSCore:
    core = make_core(seed=seed, cls=cls)
    g = torch.Generator().manual_seed(seed)
    set_raw(
        core,
        torch.randn(P, generator=g) * 2,
        torch.randn(P, generator=g) * 3,
        torch.rand(P, generator=g) * 5,
    )
    return core.to(dtype)


def run_with_grads(core: DLinOSSCore, u: torch.Tensor, w: torch.Tensor, mode: str) -> dict:
    u = u.clone().requires_grad_(True)
    y = core(u, mode)
    names = [n for n, _ in core.named_parameters()]
    # allow_unused: at L = 1 the output does not depend on a (x_0 = dt²/S·(Bu)_0).
    grads = torch.autograd.grad((y * w).sum(), [u, *core.parameters()], allow_unused=True)
    grads = [
        torch.zeros_like(p) if gr is None else gr
        for gr, p in zip(grads, [u, *core.parameters()], strict=True)
    ]
    return {"y": y.detach(), "u": grads[0], **dict(zip(names, grads[1:], strict=True))}


def rel_err(x: torch.Tensor, ref: torch.Tensor) -> float:
    """Max error relative to the reference's scale (floor 1e-6 for exact zeros: ∂y/∂a at L = 1)."""
    scale = ref.double().abs().max().clamp_min(1e-6)
    return ((x.double() - ref.double()).abs().max() / scale).item()


# ----------------------------------------------------------------------------- mode agreement


CONFIGS = pytest.mark.parametrize(
    "cls", [DLinOSSConfig, DLinOSSSigmoidConfig], ids=["clamp", "sigmoid"]
)


@CONFIGS
@pytest.mark.parametrize("make", [boundary_core, random_core], ids=["boundary", "random"])
@pytest.mark.parametrize("length", LENGTHS)
def test_modes_agree_outputs_and_gradients(make, length, cls):
    gen = torch.Generator().manual_seed(length)
    u = torch.randn(2, length, H, generator=gen, dtype=torch.float64)
    w = torch.randn(2, length, H, generator=gen, dtype=torch.float64)
    make = functools.partial(make, cls=cls)
    # float64: all modes equal the float64 recurrence to near machine precision.
    core64 = make(torch.float64)
    ref = run_with_grads(core64, u, w, "recurrent")
    for mode in ("scan", "fft", "chunk"):
        out = run_with_grads(core64, u, w, mode)
        for key, val in out.items():
            assert torch.isfinite(val).all(), (mode, key)
            assert rel_err(val, ref[key]) < 1e-9, (mode, key, rel_err(val, ref[key]))
    # float32 (the training dtype): every mode within float32 tolerance of the float64 answer.
    core32 = make(torch.float32)
    for mode in MODES:
        out = run_with_grads(core32, u.float(), w.float(), mode)
        for key, val in out.items():
            assert val.dtype == torch.float32
            assert torch.isfinite(val).all(), (mode, key)
            assert rel_err(val, ref[key]) < 5e-4, (mode, key, rel_err(val, ref[key]))


def test_closed_form_kernel_is_the_recurrence_impulse_response():
    for core in (boundary_core(), random_core()):
        dt, g, a = core.dynamics()
        length = 300
        impulse = torch.zeros(1, length, P, dtype=torch.float64)
        impulse[0, 0] = 1.0
        x = ssm_recurrent(impulse, dt, g, a)[0].T  # (P, L)
        h = dlinoss_kernel(dt, g, a, length)
        assert torch.isfinite(h).all()
        torch.testing.assert_close(h, x, rtol=1e-9, atol=1e-12 * x.abs().max().item())
        # h[0] = dt²/S, and the kernel decays like |λ|ⁿ.
        torch.testing.assert_close(h[:, 0], dt**2 / (1 + dt * g))


def test_mode_functions_on_raw_channels():
    # The module-level functions (any axes between L and N) agree with the reference.
    dt, g, a = random_core().dynamics()
    v = torch.randn(2, 37, 3, P, dtype=torch.float64)
    ref = ssm_recurrent(v, dt, g, a)
    torch.testing.assert_close(ssm_scan(v, dt, g, a), ref, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(ssm_fft(v, dt, g, a), ref, rtol=1e-9, atol=1e-12)


def test_kernel_backward_is_exact_near_theta_zero():
    # Autograd through θ = arccos(c) loses ~eps/θ² near θ → 0; the custom backward does not.
    theta = torch.tensor([1e-7, 1e-3, 0.5, 2.0, math.pi - 1e-3], dtype=torch.float64)
    log_rho = torch.log(torch.tensor([0.9999, 0.99, 0.9, 0.5, 0.95], dtype=torch.float64))
    c = torch.cos(theta)

    def q(lr, cc):
        theta = torch.arccos(cc.detach())
        phi, sign = torch.minimum(theta, math.pi - theta), torch.sign(cc.detach())
        return _DampedChebyshev.apply(lr, cc, phi, sign, torch.arange(40))

    # gradcheck's finite differences need c ± 1e-7 inside [−1, 1]: skip θ = 1e-7 there.
    lr, cc = log_rho[1:].clone().requires_grad_(), c[1:].clone().requires_grad_()
    assert torch.autograd.gradcheck(q, (lr, cc), eps=1e-7, atol=1e-6, rtol=1e-5, nondet_tol=0)
    # Against the recurrence U_{n+1} = 2c·U_n − U_{n−1} differentiated by autograd.
    cc = c.clone().requires_grad_()
    us = [torch.ones_like(cc), 2 * cc]
    for _ in range(38):
        us.append(2 * cc * us[-1] - us[-2])
    ref = torch.autograd.grad(
        (torch.stack(us, -1) * torch.exp(log_rho[:, None] * torch.arange(40))).sum(), cc
    )[0]
    got = torch.autograd.grad(q(log_rho, cc).sum(), cc)[0]
    torch.testing.assert_close(got, ref, rtol=1e-9, atol=0)


def test_relaxed_repeated_roots_give_finite_kernel():
    # Official parameterisation: a clamped exactly onto lo or hi (λ₁ = λ₂), where the
    # closed form (λ₁^{n+1} − λ₂^{n+1})/(λ₁ − λ₂) is 0/0; the limit (n+1)λⁿ is used.
    core = make_core(p=2, relaxed=True).double()
    set_raw(core, [0.5, -0.5], [0.3, 0.2], [-1e4, 1e4])
    h = core.kernel(100)
    assert torch.isfinite(h).all()
    dt, g, a = core.dynamics()
    impulse = torch.zeros(1, 100, 2, dtype=torch.float64)
    impulse[0, 0] = 1.0
    torch.testing.assert_close(h, ssm_recurrent(impulse, dt, g, a)[0].T, rtol=1e-9, atol=1e-12)


# ----------------------------------------------------------------------------- parameterisation


def _raw_grids() -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    vals = torch.tensor([-1e4, -30.0, 0.0, 30.0, 1e4, 1e30, -1e30])
    grid = torch.cartesian_prod(vals, vals, vals)  # (343, 3)
    out = [(grid[:, 0], grid[:, 1], grid[:, 2])]
    gen = torch.Generator().manual_seed(0)
    for scale in (1.0, 10.0, 1e3, 1e4):
        out.append(tuple(torch.randn(512, generator=gen) * scale for _ in range(3)))
    return out


@CONFIGS
def test_eigenvalues_strictly_inside_unit_circle_and_complex_for_any_raw_values(cls):
    for dt_raw, g_raw, a_raw in _raw_grids():
        core = make_core(p=dt_raw.numel(), cls=cls)
        set_raw(core, dt_raw, g_raw, a_raw)
        with torch.no_grad():
            dt, g, a = core.dynamics()  # float32, as in training
            assert (1.0 + dt * g > 1.0).all()  # S > 1 in float32: |λ|² = 1/S < 1
            dt, g, a = dt.double(), g.double(), a.double()
            assert ((g - dt * a) ** 2 < 4 * a).all()  # complex, distinct eigenvalues
            lam = core.eigenvalues()
            assert (lam.abs() < 1).all() and (lam.imag > 0).all()
            torch.testing.assert_close(lam.abs(), (1 + dt * g) ** -0.5)
            # Eigenvalues of the float32 transition matrix itself (as the scan uses it).
            s = 1 + dt * g
            m = torch.stack(
                [
                    torch.stack([1 / s, -dt * a / s], -1),
                    torch.stack([dt / s, 1 - dt**2 * a / s], -1),
                ],
                -2,
            )
            assert (torch.linalg.eigvals(m.float().double()).abs() < 1).all()
            assert torch.isfinite(core.kernel(64)).all()


def test_ring_init_places_eigenvalues_in_the_ring():
    cfg = dict(r_min=0.8, r_max=0.95, theta_min=0.2)
    core = make_core(p=256, **cfg)
    lam = core.eigenvalues().detach()
    assert (lam.abs() >= 0.8 - 1e-6).all() and (lam.abs() <= 0.95 + 1e-6).all()
    assert (lam.angle() >= 0.2 - 1e-4).all() and (lam.angle() <= math.pi - 0.2 + 1e-4).all()


def test_relaxed_g_zero_is_linoss_imex():
    core = make_core(p=4, relaxed=True).double()
    with torch.no_grad():
        core.g_raw.fill_(-1.0)  # ReLU → g = 0 exactly
        dt = core.dynamics()[0]
        core.a_raw.copy_(torch.tensor([0.1, 0.4, 0.7, 0.95], dtype=torch.float64) * 4 / dt**2)
    dt, g, a = core.dynamics()
    assert (g == 0).all()
    lam = core.eigenvalues()
    torch.testing.assert_close(lam.abs(), torch.ones(4, dtype=torch.float64), rtol=0, atol=1e-12)
    # Independent LinOSS-IMEX: z_k = z_{k−1} + dt(−a x_{k−1} + (Bu)_k), x_k = x_{k−1} + dt z_k.
    eff = core.effective_parameters()
    u = torch.randn(2, 50, H, dtype=torch.float64)
    bu = u.to(torch.complex128) @ eff["B"].T  # (B, L, P)
    z = x = torch.zeros(2, 4, dtype=torch.complex128)
    xs = []
    for k in range(u.shape[1]):
        z = z + dt * (-a * x + bu[:, k])
        x = x + dt * z
        xs.append(x)
    ref = (torch.stack(xs, 1) @ eff["C"].T).real + eff["D"] * u
    for mode in MODES:
        torch.testing.assert_close(core(u, mode), ref, rtol=1e-9, atol=1e-9)


def test_relaxed_g_equal_dt_a_is_linoss_im():
    core = make_core(p=4, relaxed=True).double()
    with torch.no_grad():
        dt = core.dynamics()[0]
        a = torch.tensor([0.3, 2.0, 5.0, 9.0], dtype=torch.float64)
        core.a_raw.copy_(a)
        core.g_raw.copy_(dt * a)
    dt, g, a = core.dynamics()
    torch.testing.assert_close(g, dt * a)
    torch.testing.assert_close(core.eigenvalues().abs(), (1 + dt**2 * a) ** -0.5)
    # Independent LinOSS-IM, implicit in both:
    # [[1, dt·a], [−dt, 1]]·[z_k; x_k] = [z_{k−1} + dt·(Bu)_k; x_{k−1}].
    eff = core.effective_parameters()
    u = torch.randn(2, 40, H, dtype=torch.float64)
    bu = u.to(torch.complex128) @ eff["B"].T  # (B, L, P)
    lhs = torch.zeros(4, 2, 2, dtype=torch.complex128)
    lhs[:, 0, 0], lhs[:, 0, 1], lhs[:, 1, 0], lhs[:, 1, 1] = 1, dt * a, -dt, 1
    w = torch.zeros(2, 4, 2, dtype=torch.complex128)
    xs = []
    for k in range(u.shape[1]):
        rhs = torch.stack([w[..., 0] + dt * bu[:, k], w[..., 1]], -1)
        w = torch.linalg.solve(lhs, rhs[..., None])[..., 0]  # (B, P, 2)
        xs.append(w[..., 1])
    ref = (torch.stack(xs, 1) @ eff["C"].T).real + eff["D"] * u
    for mode in MODES:
        torch.testing.assert_close(core(u, mode), ref, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize(
    "combine,chunk,cls",
    [(c, t, DLinOSSConfig) for c in ("sum", "concat") for t in (0, 1, 2, 3, 16)]
    + [("sum", 0, DLinOSSSigmoidConfig), ("concat", 3, DLinOSSSigmoidConfig)],
)
@pytest.mark.parametrize("length", LENGTHS)
def test_bidirectional_chunked_layer_equals_recurrent_with_gradients(combine, chunk, cls, length):
    """Both directions in one chunked call (reversed operators, end states at the chunk's
    start) equal the two recurrent cores, at every chunk length including T = 1 and T ∤ L."""
    cfg = cls(d_model=H, n_oscillators=P, combine=combine, chunk=chunk)
    torch.manual_seed(0)
    layer = DLinOSSLayer(H, cfg).double()
    src = boundary_core(cls=cls)
    for core in (layer.fwd, layer.bwd):  # both directions at the parameterisation's edges
        for name in ("dt_raw", "g_raw", "a_raw"):
            getattr(core, name).data.copy_(getattr(src, name).data)
    layer.bwd.a_raw.data = layer.bwd.a_raw.data.flip(0)  # different oscillators per direction
    gen = torch.Generator().manual_seed(length)
    u = torch.randn(2, length, H, generator=gen, dtype=torch.float64)
    w = torch.randn(2, length, H, generator=gen, dtype=torch.float64)

    def run(mode: str) -> dict:
        x = u.clone().requires_grad_(True)
        y = layer(x, mode)
        grads = torch.autograd.grad((y * w).sum(), [x, *layer.parameters()], allow_unused=True)
        names = ["u", *(n for n, _ in layer.named_parameters())]
        out = {n: torch.zeros(1) if gr is None else gr for n, gr in zip(names, grads, strict=True)}
        return {"y": y.detach(), **out}

    ref, out = run("recurrent"), run("chunk")
    for key, val in out.items():
        assert rel_err(val, ref[key]) < 1e-9, (key, rel_err(val, ref[key]))


# ----------------------------------------------------------------------------- causality


@pytest.mark.parametrize("mode", MODES)
def test_unidirectional_core_is_causal(mode):
    core = random_core()
    u = torch.randn(2, 40, H, dtype=torch.float64)
    u2 = u.clone()
    u2[:, 25:] += torch.randn(2, 15, H, dtype=torch.float64)
    y, y2 = core(u, mode), core(u2, mode)
    torch.testing.assert_close(y[:, :25], y2[:, :25], rtol=0, atol=1e-12)
    assert (y[:, 25:] - y2[:, 25:]).abs().amax(dim=(0, 2)).min() > 1e-6


def test_bidirectional_layer_sees_both_sides():
    torch.manual_seed(0)
    layer = DLinOSSLayer(H, DLinOSSConfig(d_model=H, n_oscillators=P)).double()
    u = torch.randn(2, 40, H, dtype=torch.float64)
    u2 = u.clone()
    u2[:, 25] += 1.0
    d = (layer(u) - layer(u2)).abs().amax(dim=(0, 2))
    assert d[:25].min() > 0 and d[26:].min() > 0


# ----------------------------------------------------------------------------- transfer function


def test_frequency_response_is_dft_of_impulse_response():
    core = make_core(h=3, p=5, r_min=0.5, r_max=0.9).double()
    n = 256  # 0.9^256 ≈ 2e-12: decayed
    u = torch.zeros(3, n, 3, dtype=torch.float64)
    u[:, 0] = torch.eye(3, dtype=torch.float64)  # an impulse on each input channel
    y = core(u, "fft")  # (H_in, N, H_out)
    dft = torch.fft.fft(y, dim=1).permute(1, 2, 0)  # (N, H_out, H_in)
    omega = 2 * math.pi * torch.arange(n, dtype=torch.float64) / n
    torch.testing.assert_close(core.transfer_function(omega), dft, rtol=1e-9, atol=1e-9)
    w, resp = core.frequency_response(n // 2 + 1)
    torch.testing.assert_close(w, omega[: n // 2 + 1])
    torch.testing.assert_close(resp, dft[: n // 2 + 1], rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("combine", ["sum", "concat"])
def test_bidirectional_frequency_response_is_dft_of_two_sided_impulse_response(combine):
    torch.manual_seed(0)
    cfg = DLinOSSConfig(d_model=3, n_oscillators=4, r_min=0.5, r_max=0.9, combine=combine)
    layer = DLinOSSLayer(3, cfg).double()
    n, c = 512, 256
    u = torch.zeros(3, n, 3, dtype=torch.float64)
    u[:, c] = torch.eye(3, dtype=torch.float64)
    y = layer(u) - layer(torch.zeros_like(u))  # remove a concat projection's bias
    dft = torch.fft.fft(y, dim=1).permute(1, 2, 0)  # (N, H_out, H_in)
    omega = 2 * math.pi * torch.arange(n, dtype=torch.float64) / n
    resp = layer.transfer_function(omega)
    expected = torch.exp(-1j * omega * c)[:, None, None] * resp["total"]  # phase of the delay
    torch.testing.assert_close(expected, dft, rtol=1e-9, atol=1e-9)
    assert set(resp) == {"forward", "backward", "total"}


def test_effective_parameters_are_clamped_values():
    core = boundary_core()
    eff = core.effective_parameters()
    assert set(eff) == {"dt", "g", "a", "eigenvalues", "B", "C", "D"}
    assert eff["B"].shape == (P, H) and eff["B"].is_complex()
    assert eff["C"].shape == (H, P) and eff["C"].is_complex()
    cfg = core.cfg
    dt, g, a = eff["dt"], eff["g"], eff["a"]
    assert (dt >= cfg.dt_min).all() and (dt <= cfg.dt_max).all() and (g >= cfg.g_min).all()
    sq = torch.sqrt(1 + dt * g)
    assert (a >= (sq - 1) ** 2 / dt**2 * (1 + cfg.clamp_eps) * (1 - 1e-12)).all()
    assert (a <= (sq + 1) ** 2 / dt**2 * (1 - cfg.clamp_eps) * (1 + 1e-12)).all()
    torch.manual_seed(0)
    layer = DLinOSSLayer(H, DLinOSSConfig(d_model=H, n_oscillators=P, combine="concat"))
    assert set(layer.effective_parameters()) == {"forward", "backward", "combine"}


# ----------------------------------------------------------------------------- block / backbone


def small_cfg(**kw) -> DLinOSSConfig:
    return DLinOSSConfig(**{"d_model": 16, "n_layers": 2, "n_oscillators": 8, **kw})


def test_backbone_shape_backward_and_registry():
    bb = build_backbone("dlinoss", {"d_model": 16, "n_layers": 2, "n_oscillators": 8})
    assert isinstance(bb, DLinOSSBackbone)
    x = torch.randn(3, 37, 16, requires_grad=True)
    y = bb(x)
    assert y.shape == x.shape
    y.square().mean().backward()
    assert torch.isfinite(x.grad).all()
    for name, prm in bb.named_parameters():
        assert prm.grad is not None and torch.isfinite(prm.grad).all(), name


def test_backbone_modes_agree():
    torch.manual_seed(0)
    bb = DLinOSSBackbone(small_cfg(combine="concat")).double()
    x = torch.randn(2, 70, 16, dtype=torch.float64)
    outs = {}
    for mode in MODES:
        bb.set_mode(mode)
        outs[mode] = bb(x)
    torch.testing.assert_close(outs["scan"], outs["recurrent"], rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(outs["fft"], outs["recurrent"], rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(outs["chunk"], outs["recurrent"], rtol=1e-9, atol=1e-9)


def test_backbone_deterministic_under_seed():
    x = torch.randn(2, 50, 16)
    outs = []
    for _ in range(2):
        torch.manual_seed(123)
        bb = DLinOSSBackbone(small_cfg(dropout=0.1))
        outs.append(bb(x))  # train mode: dropout masks drawn after the same init
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=0)
    bb.eval()
    torch.testing.assert_close(bb(x), bb(x), rtol=0, atol=0)


def test_backbone_under_bf16_autocast_runs_core_in_fp32():
    torch.manual_seed(0)
    bb = DLinOSSBackbone(small_cfg())
    dtypes = []
    for layer in bb.layers():  # in the chunked mode a layer runs both cores in one call
        layer.register_forward_hook(lambda m, i, o: dtypes.append(o.dtype))
    x = torch.randn(2, 64, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = bb(x)
    assert torch.isfinite(y).all()
    assert dtypes and all(d == torch.float32 for d in dtypes)
    y.float().sum().backward()
    # The core itself: same answer under autocast as in plain float32.
    core = bb.layers()[0].cores()["forward"]
    u = torch.randn(2, 64, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ya = core(u.bfloat16())
    torch.testing.assert_close(ya, core(u.bfloat16().float()))


def test_parameter_budget_combine_and_optim_hints():
    n_sum = count_parameters(DLinOSSBackbone(DLinOSSConfig()))
    assert 0.9e6 < n_sum < 1.1e6
    n_cat = count_parameters(DLinOSSBackbone(DLinOSSConfig(combine="concat")))
    h = DLinOSSConfig().d_model
    assert n_cat - n_sum == DLinOSSConfig().n_layers * (2 * h * h + h)
    n_uni = count_parameters(DLinOSSBackbone(DLinOSSConfig(bidirectional=False)))
    assert n_uni < n_sum
    core = make_core().double()  # hints survive dtype moves
    for name, prm in core.named_parameters():
        if name in ("dt_raw", "g_raw", "a_raw"):
            assert prm._optim == {"lr_scale": 1.0, "weight_decay": 0.0}
        else:
            assert not hasattr(prm, "_optim")


def test_config_validation_and_size_knobs():
    knobs = DLinOSSConfig.SIZE_KNOBS
    assert set(knobs) == {"n_layers", "n_oscillators"}
    assert all(list(v) == sorted(v) and all(isinstance(i, int) for i in v) for v in knobs.values())
    cfg = make_backbone_config("dlinoss", d_model=32, mode="scan", combine="concat")
    assert cfg.mode == "scan" and cfg.combine == "concat"
    bad = [
        {"mode": "magic"},
        {"chunk": -1},
        {"combine": "mean"},
        {"norm": "batch"},
        {"n_layers": 0},
        {"dt_min": 0.0},
        {"dt_min": 1.0, "dt_max": 0.5},
        {"g_min": 0.0},
        {"g_min": 1e-5},  # dt_min·g_min below float32 resolution
        {"clamp_eps": 0.0},
        {"r_max": 1.0},
        {"r_max": 0.99999},  # ring init would need g < g_min
        {"theta_min": 2.0},
    ]
    for fields in bad:
        with pytest.raises(ConfigError):
            DLinOSSConfig(**fields)
    with pytest.raises(ConfigError):
        make_backbone_config("dlinoss", n_osc=3)
    assert resolve_mode("auto", torch.device("cpu")) == AUTO_MODE["cpu"]


# ----------------------------------------------------------------------------- sigmoid variant


def test_sigmoid_variant_keeps_the_ring_init_and_a_inside_the_interval():
    clamp = make_core(p=256, seed=3)
    sig = make_core(p=256, seed=3, cls=DLinOSSSigmoidConfig)
    # Same draws, same eigenvalues (up to float32 rounding of the stored raw values).
    lam_c, lam_s = clamp.eigenvalues().detach(), sig.eigenvalues().detach()
    assert (lam_c - lam_s).abs().max() < 1e-4
    lo, hi = clamp_interval(sig.cfg, sig.dt_raw, sig.g_raw)
    _, _, a = sig.dynamics()
    assert ((a >= lo) & (a <= hi)).all()
    with pytest.raises(ConfigError, match="sigmoid variant has no relaxed form"):
        DLinOSSSigmoidConfig(relaxed=True)


def test_sigmoid_variant_has_gradient_where_the_clamp_has_none():
    """a_raw outside the clamp interval: no gradient for the official form, a nonzero one for
    every oscillator of the variant (raw values up to |a_raw| = 12)."""
    gen = torch.Generator().manual_seed(0)
    u = torch.randn(2, 33, H, generator=gen, dtype=torch.float64)
    grads = {}
    for cls in (DLinOSSConfig, DLinOSSSigmoidConfig):
        core = make_core(cls=cls).double()
        lo, hi = clamp_interval(core.cfg, core.dt_raw, core.g_raw)
        with torch.no_grad():  # half below lo, half above hi for the clamp; ±12 for the sigmoid
            outside = torch.where(torch.arange(P) % 2 == 0, lo * 0.5, hi * 2.0)
            core.a_raw.copy_(outside if cls is DLinOSSConfig else (torch.arange(P) % 2 * 24.0 - 12))
        core(u, "fft").square().sum().backward()
        grads[cls.A_PARAM] = core.a_raw.grad
    assert (grads["clamp"] == 0).all()
    assert (grads["sigmoid"].abs() > 0).all()


def test_clamp_counts_count_oscillators_outside_the_interval():
    bb = build_backbone("dlinoss", {"d_model": 8, "n_layers": 2, "n_oscillators": 8})
    cores = bb.cores()
    with torch.no_grad():
        for core in cores:  # every a_raw inside first
            lo, hi = clamp_interval(core.cfg, core.dt_raw, core.g_raw)
            core.a_raw.copy_(0.5 * (lo + hi))
        lo, hi = clamp_interval(bb.cfg, cores[0].dt_raw, cores[0].g_raw)
        cores[0].a_raw[:3] = hi[:3] * 1.5
        lo, hi = clamp_interval(bb.cfg, cores[3].dt_raw, cores[3].g_raw)
        cores[3].a_raw[5] = lo[5] * 0.5
    assert bb.clamp_counts() == {"below_lo": 1, "above_hi": 3, "total": 4 * 8}
    sig = build_backbone("dlinoss_sigmoid", {"d_model": 8, "n_layers": 2, "n_oscillators": 8})
    assert isinstance(sig, DLinOSSSigmoidBackbone)
    assert sig.clamp_counts() == {"below_lo": 0, "above_hi": 0, "total": 4 * 8}
    # Same shape, same parameter count as the official form.
    assert count_parameters(sig) == count_parameters(bb)
