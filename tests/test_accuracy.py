"""Each built-in case reaches its target relative L2 error on the CPU (default settings)."""

import json

import pytest

import pdeml.run as R

TARGETS = {"heat_1d": 1e-2, "poisson_manufactured_3d": 1e-2, "poisson_lshape": 2e-2}
#: over 90 s each on CI's two cores: they run with ``-m slow`` (``make bench``), so that CI stays
#: under 15 minutes; ``make demo`` trains poisson_lshape and prints the error to hold to 2e-2
LONG = {"poisson_manufactured_3d", "poisson_lshape"}


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n in LONG else n for n in sorted(TARGETS)]
)
def test_case_reaches_its_target(name, tmp_path):
    m = R.train_case(name, tmp_path, progress=False, export=False)
    print(name, json.dumps({k: m[k] for k in ("l2_relative_error", "wall_time_s", "steps")}))
    assert m["l2_relative_error"] <= TARGETS[name]


@pytest.mark.slow  # 37 s on CI's two cores (CI stays under 15 minutes)
def test_inverse_diffusion_recovers_kappa(tmp_path):
    m = R.train_case("inverse_diffusion", tmp_path, progress=False, export=False)
    kappa = m["parameters"]["kappa"]
    print("inverse_diffusion kappa", kappa, m["wall_time_s"])
    assert abs(kappa - 0.1) / 0.1 <= 0.02


@pytest.mark.slow  # 69 s on CI's two cores (CI stays under 15 minutes)
def test_burgers_reaches_5e_2_with_default_settings(tmp_path):
    m = R.train_case("burgers_1d", tmp_path, progress=False, export=False)
    print("burgers default", m["l2_relative_error"], m["wall_time_s"])
    assert m["l2_relative_error"] <= 5e-2
    assert m["final_losses"]["initial"] < 1e-10 and m["final_losses"]["dirichlet"] < 1e-10  # ansatz


@pytest.mark.slow
def test_burgers_reaches_5e_3_with_adam_and_lbfgs(tmp_path):
    from pdeml.cases.burgers_1d import long_case

    m = R.train_case(long_case(), tmp_path, progress=False, export=False)
    print("burgers long", m["l2_relative_error"], m["wall_time_s"])
    assert m["l2_relative_error"] <= 5e-3


@pytest.mark.slow
def test_allen_cahn_100d_with_stde_reaches_2e_2(tmp_path):
    m = R.train_case(
        "allen_cahn_highdim", tmp_path, options={"dim": 100}, progress=False, export=False
    )
    print("allen_cahn_highdim D=100 stde:16", m["l2_relative_error"], m["wall_time_s"])
    assert m["l2_relative_error"] <= 2e-2


@pytest.mark.slow
def test_semilinear_heat_100d_within_2_percent_of_the_reference(tmp_path):
    m = R.train_case(
        "heat_semilinear_highdim", tmp_path, options={"dim": 100}, progress=False, export=False
    )
    print(
        "heat_semilinear_highdim D=100 u(0,0) rel. error", m["l2_relative_error"], m["wall_time_s"]
    )
    assert m["l2_relative_error"] <= 2e-2


@pytest.fixture
def one_thread():
    """Torch on one thread for the test, as the figures it checks were measured (docs/samplers.md).
    The convection runs are sensitive to rounding: causal R3 at seed 0 ends at 0.0153-0.0156 on
    one thread (MKL or oneDNN products), 0.0143-0.0228 on two, and 0.024-0.030 at seed 1."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.slow
@pytest.mark.parametrize("sampler", ["r3", "r3-causal"])
def test_convection_beta30_with_r3_reaches_2e_2(sampler, tmp_path, one_thread):
    m = R.train_case("convection_1d", tmp_path, sampler=sampler, progress=False, export=False)
    print("convection_1d beta=30", sampler, m["l2_relative_error"], m["wall_time_s"])
    assert m["l2_relative_error"] <= 2e-2


@pytest.mark.slow
def test_convection_beta30_fails_with_fixed_uniform_points(tmp_path):
    """The failure mode the samplers exist for: the same settings, fixed uniform points."""
    m = R.train_case("convection_1d", tmp_path, steps=20000, progress=False, export=False)
    print("convection_1d beta=30 uniform", m["l2_relative_error"], m["wall_time_s"])
    assert m["l2_relative_error"] > 0.5


@pytest.mark.slow
def test_allen_cahn_causal_r3_with_lbfgs_reaches_1e_2(tmp_path):
    """The case defaults: causal R3 for 40k Adam steps, then L-BFGS on the last points
    (about an hour on one CPU thread)."""
    m = R.train_case("allen_cahn_1d", tmp_path, progress=False, export=False)
    print("allen_cahn_1d causal R3 + L-BFGS", m["l2_relative_error"], m["wall_time_s"])
    assert m["l2_relative_error"] <= 1e-2


@pytest.mark.slow
def test_wave_with_initial_velocity_reaches_3e_2(tmp_path):
    """wave_1d's defaults (u_tt = u_xx with u and u_t given at t = 0): 2.2e-2 measured, 150 s."""
    m = R.train_case("wave_1d", tmp_path, progress=False, export=False)
    assert m["l2_relative_error"] < 3e-2
