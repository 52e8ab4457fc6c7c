"""E3 transfer functions: the computed H(z) is the layer's own behaviour (DFT of impulse
responses, random and trained parameters), closed-form resonance / bandwidth / damping against
dense grids and known poles, coupling rank, layer gains, checkpoints and the spectral spacing."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from spektron.analysis.transfer_function import (
    SCALAR_FIELDS,
    analyse_checkpoint,
    analyse_model,
    coupling_matrices,
    from_json,
    oscillator_table,
    response_from_coefficients,
    sample_spacing_cm,
    to_json,
)
from spektron.errors import CheckpointError, ConfigError
from spektron.models.backbones.dlinoss import DLinOSSConfig, DLinOSSCore
from spektron.models.embedding import EmbeddingConfig
from spektron.models.spektron import Spektron, SpektronConfig

H, P = 3, 5


def tiny_model(seed: int = 0, **backbone) -> Spektron:
    torch.manual_seed(seed)
    cfg = {"n_layers": 2, "n_oscillators": 4, **backbone}
    return Spektron(
        SpektronConfig(
            d_model=6,
            embedding=EmbeddingConfig(stride=4),
            backbone="dlinoss",
            backbone_config=cfg,
            head="reconstruction",
        )
    )


def set_pole(core: DLinOSSCore, p: int, r: float, theta: float, dt_raw: float = 0.0) -> None:
    """Raw parameters giving oscillator p the eigenvalues r·e^{±iθ} (inside the clamp)."""
    cfg = core.cfg
    dt = cfg.dt_min + (cfg.dt_max - cfg.dt_min) / (1 + math.exp(-dt_raw))
    g = (1 - r**2) / (dt * r**2)
    a = (1 - 2 * r * math.cos(theta) + r**2) / (dt**2 * r**2)
    with torch.no_grad():
        core.dt_raw[p] = dt_raw
        core.g_raw[p] = math.log(math.expm1(g - cfg.g_min))
        core.a_raw[p] = a


def impulse_dft(core: DLinOSSCore, n: int) -> torch.Tensor:
    """DFT of the response to a unit impulse on each input channel: (n, H_out, H_in)."""
    h = core.D.shape[0]
    u = torch.zeros(h, n, h, dtype=torch.float64)
    u[:, 0] = torch.eye(h, dtype=torch.float64)
    with torch.no_grad():
        y = core(u, "recurrent")  # (H_in, n, H_out)
    return torch.fft.fft(y, dim=1).permute(1, 2, 0)


def trained_core() -> DLinOSSCore:
    """A core after a few Adam steps on random data (moves dt, g, a, B, C, D off their init)."""
    torch.manual_seed(3)
    core = DLinOSSCore(H, DLinOSSConfig(d_model=H, n_oscillators=P, r_min=0.5, r_max=0.9))
    init = [p.detach().clone() for p in core.parameters()]
    opt = torch.optim.Adam(core.parameters(), lr=0.05)
    u, target = torch.randn(4, 32, H), torch.randn(4, 32, H)
    for _ in range(5):
        opt.zero_grad()
        loss = ((core(u, "scan") - target) ** 2).mean()
        loss.backward()
        opt.step()
    assert all((p - q).abs().max() > 1e-3 for p, q in zip(core.parameters(), init, strict=True))
    return core.double()


def random_core() -> DLinOSSCore:
    torch.manual_seed(1)
    return DLinOSSCore(H, DLinOSSConfig(d_model=H, n_oscillators=P, r_min=0.5, r_max=0.9)).double()


# ----------------------------------------------------------------------------- spacing


def test_sample_spacing_default_grid_and_stride():
    assert sample_spacing_cm(None, 8) == pytest.approx(8 * 3500 / 2047, rel=1e-15)
    assert sample_spacing_cm({"n_points": 11, "lo": 0, "hi": 10}, 1) == pytest.approx(1.0)
    with pytest.raises(ConfigError):
        sample_spacing_cm({"n_points": 1, "lo": 0, "hi": 10}, 1)
    with pytest.raises(ConfigError):
        sample_spacing_cm(None, 0)


# ----------------------------------------------------------------------------- exactness


def test_coefficients_give_the_cores_oscillator_response():
    model = tiny_model()
    an = analyse_model(model, 1.0, n_freq=33)
    omega = torch.as_tensor(an["omega"])
    zinv = np.exp(-1j * an["omega"])[:, None] ** np.arange(3)  # (F, 3): 1, z⁻¹, z⁻²
    for layer, out in zip(model.backbone.layers(), an["layers"], strict=True):
        for name, core in layer.cores().items():
            d = out["directions"][name]
            num, den = d["numerator"], d["denominator"]
            np.testing.assert_array_equal(num[:, 1:], 0.0)  # dt²·z²: a double zero at z = 0
            np.testing.assert_array_equal(den[:, 0], 1.0)
            resp = (zinv @ num.T) / (zinv @ den.T)  # (F, P)
            with torch.no_grad():
                ref = core.oscillator_response(omega).numpy()
            np.testing.assert_allclose(resp, ref, rtol=1e-12, atol=0)
            np.testing.assert_allclose(
                response_from_coefficients(num, den, an["omega"]), ref.T, rtol=1e-12, atol=0
            )
            # Poles: roots of z² − (T/S)·z + 1/S are r·e^{±iθ}.
            roots = np.roots(den[0])
            np.testing.assert_allclose(np.abs(roots), d["r"][0], rtol=1e-9)
            np.testing.assert_allclose(np.abs(np.angle(roots)), d["theta"][0], rtol=1e-7)
            np.testing.assert_allclose(20 * np.log10(np.abs(ref)).T, d["magnitude_db"], atol=1e-9)
            np.testing.assert_allclose(np.angle(ref).T, d["phase"], atol=1e-12)


@pytest.mark.parametrize("make", [random_core, trained_core], ids=["random", "trained"])
def test_transfer_function_is_dft_of_the_recurrent_impulse_response(make):
    core = make()
    r_max = core.eigenvalues().abs().max().item()
    n = 1 << math.ceil(math.log2(math.log(1e-14) / math.log(r_max)))  # r^n < 1e-14: decayed
    assert n <= 1024
    dft = impulse_dft(core, n)  # (n, H, H)
    omega = 2 * math.pi * torch.arange(n, dtype=torch.float64) / n
    with torch.no_grad():
        resp = core.transfer_function(omega)  # (n, H, H)
    torch.testing.assert_close(resp.abs(), dft.abs(), rtol=1e-9, atol=1e-10)
    # Phase included: compare the unit phasors where the response is not negligible.
    big = dft.abs() > 1e-6 * dft.abs().max()
    phase_err = (resp / dft)[big].angle().abs().max().item()
    assert phase_err < 1e-8


def test_transfer_function_matches_the_exact_finite_length_dft_without_decay():
    # |λ| ≈ 0.999: after n = 128 steps the response has not decayed (0.999^128 ≈ 0.88), so the
    # DFT is the finite sum Σ_{n<N} h[n] e^{−iωn}; on the DFT grid e^{−iωN} = 1 and
    # Σ λ^{n+1} e^{−iωn} = λ(1 − λ^N)/(1 − λ e^{−iω}).
    core = random_core()
    for p, theta in enumerate((0.05, 0.7, 1.6, 2.5, 3.1)):
        set_pole(core, p, 0.999, theta, dt_raw=0.3 * p - 0.6)
    n = 128
    dft = impulse_dft(core, n)
    omega = 2 * math.pi * torch.arange(n, dtype=torch.float64) / n
    with torch.no_grad():
        dt, g, _ = core.dynamics()
        lam1 = core.eigenvalues()  # (P,)
        lam2 = lam1.conj()
        e = torch.exp(-1j * omega)[:, None]  # (n, 1)

        def part(lam):
            return lam * (1 - lam**n) / (1 - lam * e)  # (n, P)

        finite = (dt * dt / (1 + dt * g)) * (part(lam1) - part(lam2)) / (lam1 - lam2)  # (n, P)
        w = core.coupling_matrices()  # (P, H, H)
        expected = torch.einsum("fp,pij->fij", finite, w.to(finite.dtype)) + torch.diag(core.D)
        infinite = core.transfer_function(omega)
    torch.testing.assert_close(expected, dft, rtol=1e-9, atol=1e-9)
    assert (infinite - dft).abs().max() > 1e-2  # the decayed comparison would not hold here


def test_layer_gains_are_the_norms_of_the_layers_own_transfer_function():
    for combine in ("sum", "concat"):
        model = tiny_model(combine=combine)
        an = analyse_model(model, 2.0, n_freq=17)
        omega = torch.as_tensor(an["omega"])
        for layer, out in zip(model.backbone.layers(), an["layers"], strict=True):
            with torch.no_grad():
                tf = layer.transfer_function(omega)  # (F, H, H) per key
            for key, ref in (
                ("total", out["total"]["gain_rms_db"]),
                ("forward", out["directions"]["forward"]["gain_rms_db"]),
                ("backward", out["directions"]["backward"]["gain_rms_db"]),
            ):
                rms = torch.linalg.matrix_norm(tf[key]).numpy() / math.sqrt(6)
                np.testing.assert_allclose(ref, 20 * np.log10(rms), atol=1e-9)
        assert ("coupling_norm_in_layer" in an["layers"][0]["directions"]["forward"]) == (
            combine == "concat"
        )


# ----------------------------------------------------------------------------- definitions


def test_resonance_bandwidth_and_damping_of_known_poles_match_dense_grids():
    model = tiny_model()
    core = model.backbone.layers()[0].fwd
    poles = [(0.95, 1.0), (0.99, 0.3), (0.9, 2.6), (0.999, 0.02)]
    for p, (r, theta) in enumerate(poles):
        set_pole(core, p, r, theta)
    an = analyse_model(model, 1.5, n_freq=9)
    d = an["layers"][0]["directions"]["forward"]
    w = torch.linspace(0.0, math.pi, 400_001, dtype=torch.float64)
    with torch.no_grad():
        mag = core.oscillator_response(w).abs().numpy()  # (F, P)
    step = math.pi / 400_000
    for p, (r, theta) in enumerate(poles):
        assert d["r"][p] == pytest.approx(r, rel=1e-6)
        assert d["theta"][p] == pytest.approx(theta, rel=1e-5)
        peak = math.acos(math.cos(theta) * (1 + r * r) / (2 * r))
        assert d["omega_res"][p] == pytest.approx(peak, abs=1e-5)
        assert abs(d["omega_res"][p] - w[mag[:, p].argmax()].item()) <= step
        grid_db = 20 * math.log10(mag[:, p].max())  # a grid point: at most the true peak
        assert d["peak_gain_db"][p] - 1e-4 < grid_db <= d["peak_gain_db"][p] + 1e-9
        above = np.flatnonzero(mag[:, p] >= mag[:, p].max() / math.sqrt(2))
        bw = (above[-1] - above[0]) * step / (2 * math.pi * 1.5)
        assert d["bandwidth"][p] == pytest.approx(bw, abs=2 * step / (2 * math.pi * 1.5))
        assert d["zeta"][p] == pytest.approx(-math.log(r) / math.hypot(math.log(r), theta), 1e-5)
        assert d["f_res"][p] == pytest.approx(d["omega_res"][p] / (2 * math.pi * 1.5))
        assert d["period_res"][p] == pytest.approx(1 / d["f_res"][p])
        assert d["f_pole"][p] == pytest.approx(theta / (2 * math.pi * 1.5), rel=1e-5)


def test_low_pass_oscillator_peaks_at_zero_with_nan_bandwidth():
    model = tiny_model()
    core = model.backbone.layers()[0].fwd
    set_pole(core, 0, 0.5, 0.3)  # cos θ·(1 + r²)/(2r) ≈ 1.19 > 1: the peak is at ω = 0
    set_pole(core, 1, 0.5, math.pi - 0.3)  # high-pass: peak at ω = π
    d = analyse_model(model, 1.0, n_freq=9)["layers"][0]["directions"]["forward"]
    assert d["omega_res"][0] == 0.0 and d["period_res"][0] == math.inf
    assert d["omega_res"][1] == pytest.approx(math.pi)
    assert np.isnan(d["bandwidth"][:2]).all() and np.isnan(d["q_factor"][:2]).all()
    # DC gain of x per unit (Bu) is 1/a.
    assert d["peak_gain_db"][0] == pytest.approx(-20 * math.log10(d["a"][0]), abs=1e-9)
    assert d["zeta"][0] == pytest.approx(-math.log(0.5) / math.hypot(math.log(0.5), 0.3), 1e-6)


def test_coupling_matrices_have_rank_at_most_two():
    model = tiny_model(n_oscillators=3)
    an = analyse_model(model, 1.0, n_freq=5)
    mats = coupling_matrices(model)
    assert set(mats) == {(0, "forward"), (0, "backward"), (1, "forward"), (1, "backward")}
    for (i, name), w in mats.items():
        d = an["layers"][i]["directions"][name]
        assert w.shape == (3, 6, 6) and w.dtype == np.float64
        sv = np.linalg.svd(w, compute_uv=False)  # (P, 6)
        assert (sv[:, 2:] < 1e-12 * sv[:, :1]).all()
        np.testing.assert_allclose(d["coupling_sv1"], sv[:, 0], rtol=1e-12)
        np.testing.assert_allclose(d["coupling_sv2"], sv[:, 1], rtol=1e-12)
        np.testing.assert_allclose(d["coupling_norm"], np.linalg.norm(w, axis=(1, 2)), 1e-12)
        assert (d["coupling_rank_residual"] < 1e-12).all()


# ----------------------------------------------------------------------------- checkpoints


def test_analyse_checkpoint_uses_the_stored_grid_and_stride(tmp_path):
    model = tiny_model()
    grid = {"n_points": 1025, "lo": 400.0, "hi": 4000.0}
    model.save_checkpoint(tmp_path / "best.pt", {"grid": grid})
    model.save_checkpoint(tmp_path / "init.pt")  # no grid: the default one
    an = analyse_checkpoint(tmp_path / "best.pt", n_freq=8)
    assert an["spacing_cm"] == pytest.approx(4 * 3600 / 1024)
    assert an["grid"] == grid and an["stride"] == 4
    assert analyse_checkpoint(tmp_path / "init.pt", n_freq=8)["spacing_cm"] == pytest.approx(
        4 * 3500 / 2047
    )
    rows = oscillator_table(an)
    assert len(rows) == 2 * 2 * 4  # layers × directions × oscillators
    assert set(SCALAR_FIELDS) <= set(rows[0]) and len(rows[0]["denominator"]) == 3


def test_json_round_trip_keeps_everything_but_the_rebuildable_responses():
    an = analyse_model(tiny_model(), 2.0, n_freq=8)
    data = json.loads(json.dumps(to_json(an)))
    assert "magnitude_db" not in data["layers"][0]["directions"]["forward"]
    back = from_json(data)
    d0, d1 = an["layers"][1]["directions"]["backward"], back["layers"][1]["directions"]["backward"]
    for f in (*SCALAR_FIELDS, "numerator", "denominator", "gain_rms_db"):
        np.testing.assert_array_equal(d0[f], d1[f])
    np.testing.assert_array_equal(back["omega"], an["omega"])
    full = to_json(an, responses=True)["layers"][0]["directions"]["forward"]
    assert len(full["phase"]) == 4 and len(full["phase"][0]) == 8


def test_analyse_checkpoint_refuses_other_backbones(tmp_path):
    torch.manual_seed(0)
    cfg = SpektronConfig(d_model=4, backbone="cnn", backbone_config={"n_layers": 1, "hidden": 4})
    Spektron(cfg).save_checkpoint(tmp_path / "cnn.pt")
    with pytest.raises(CheckpointError, match="D-LinOSS"):
        analyse_checkpoint(tmp_path / "cnn.pt")
    with pytest.raises(ConfigError, match="no D-LinOSS layers"):
        analyse_model(Spektron(cfg), 1.0)
