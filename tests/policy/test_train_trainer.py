"""A tiny training run writes a loadable policy, its VecNormalize statistics and a model card."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.gym_env import scene_table
from policy.learned import LearnedController
from policy.observation import VECTOR_FIELDS, empty_observation
from policy.train.trainer import TrainConfig, TrainError, train
from tests.conftest import run_cli

SHORT_COURSE = """
name = "short"
[sessions]
count = 2
minutes = 2
"""


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny")
    pop = d / "short.toml"
    pop.write_text(SHORT_COURSE)
    out = d / "out"
    cfg = TrainConfig(scene="crowds", scene_table=scene_table("crowds"),
                      timesteps=1024, n_envs=16, n_sub=2, n_steps=32, batch_size=256, n_epochs=1,
                      eval_every=512, eval_patients=6, card_patients=3, out=out, progress=False, seed=5,
                      population=str(pop))
    logs: list[str] = []
    res = train(cfg, log=logs.append)
    return res, out, logs


def test_tiny_run_writes_everything(tiny):
    res, out, logs = tiny
    for f in ("model.zip", "vecnormalize.pkl", "policy.npz", "card.json", "card.md"):
        assert (out / f).stat().st_size > 0, f
    assert any(line.startswith("eval @ ") for line in logs)
    assert 0 < res.timesteps <= 1024


def test_card_says_what_it_is(tiny):
    res, out, _ = tiny
    card = json.loads((out / "card.json").read_text())
    assert card["scene"] == "crowds" and card["seed"] == 5 and "short.toml (sha256 " in card["population"]
    assert card["training_seconds"] > 0
    assert card["timesteps_kept"] == res.timesteps
    val = card["validation"]["results"]
    assert set(val) == {"policy", "ladder", "suds", "hr-band", "hr-pid", "oracle"}
    for m in val.values():
        assert 0.0 <= m["responder_rate"] <= 1.0 and 0.0 <= m["dropout_rate"] <= 1.0
    per = card["per_structure"]["results"]
    assert set(per) == {"mean", "full", "habituation-only", "inhibitory-flat", "no-sensitisation",
                        "abrupt-no-transfer"}
    for res_s in per.values():
        assert set(res_s) == set(val)
    # the training patients met every structure with both sensors
    assert card["training_courses"]["courses"] >= 2
    md = (out / "card.md").read_text()
    assert "virtual patients only" in md
    assert "| policy |" in md and "| hr-band |" in md and "| oracle |" in md
    assert "### structure: abrupt-no-transfer" in md
    assert card["inputs"] == list(VECTOR_FIELDS)


def test_trained_policy_loads_and_matches_sb3(tiny):
    from stable_baselines3 import PPO

    _, out, _ = tiny
    ctl = LearnedController(scene="crowds", path=out / "policy.npz")
    model = PPO.load(out / "model.zip", device="cpu")
    with open(out / "vecnormalize.pkl", "rb") as f:
        vn = pickle.load(f)
    n = 64
    ctl.reset(n, np.linspace(0, 1, 11), np.random.default_rng(0))
    obs = empty_observation(n)
    rng = np.random.default_rng(2)
    obs.hr_delta[:] = rng.normal(5, 8, n)
    obs.intensity[:] = rng.uniform(0, 1, n)
    obs.time_at_level[:] = rng.uniform(0, 600, n)
    obs.suds[:] = rng.choice([np.nan, 20, 50, 80], n)
    obs.suds_age[:] = rng.uniform(0, 300, n)
    obs.quality[:] = 1.0
    obs.lost[:] = False
    prop = ctl.propose(obs)
    x = prop.info["obs"]
    want, _ = model.predict(vn.normalize_obs(x), deterministic=True)
    np.testing.assert_array_equal(prop.info["action"], want)


def test_scene_mismatch_is_refused(tiny):
    from policy.controllers import ControllerError

    _, out, _ = tiny
    with pytest.raises(ControllerError, match="trained for scene 'crowds'"):
        LearnedController(scene="heights", path=out / "policy.npz")


@settings(max_examples=40, deadline=None)
@given(timesteps=st.integers(-10, 10), n_envs=st.integers(-3, 0), scene=st.text(max_size=8))
def test_bad_settings_name_the_field(timesteps, n_envs, scene):
    with pytest.raises(TrainError, match="--timesteps|--envs|--scene"):
        TrainConfig(scene=scene if scene not in ("heights", "crowds") else "x", timesteps=timesteps,
                    n_envs=n_envs).validated()
    with pytest.raises(TrainError, match="--timesteps"):
        TrainConfig(timesteps=timesteps).validated()
    with pytest.raises(TrainError, match="--envs"):
        TrainConfig(n_envs=n_envs).validated()


@pytest.mark.parametrize("args, msg", [
    (("--scene", "mars"), "--scene: unknown scene 'mars'"),
    (("--timesteps", "0"), "--timesteps must be"),
    (("--envs", "3"), "--envs (3) must be a multiple"),
    (("--population", "/nonexistent/pop.toml"), "--population: no such file"),
])
def test_cli_bad_input_one_line(args, msg, tmp_path):
    p = run_cli("train", *args, "--out", tmp_path / "o", "--no-progress", timeout=120)
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("exposure: error:") and msg in lines[0]
    assert not (tmp_path / "o").exists()


def test_card_carries_the_cost_curve_and_the_bundle_its_cost_estimate(tiny):
    _, out, _ = tiny
    card = json.loads((out / "card.json").read_text())
    con = card["constraint"]
    assert con["budget_per_session"] == 0.5 and con["curve"]
    lam = con["multiplier_init"]
    for pt in con["curve"]:  # each rollout's λ follows from the one before and that rollout's cost
        want = min(con["multiplier_max"], max(0.0, lam + con["multiplier_lr"] * (pt["cost_per_session"] - 0.5)))
        assert pt["multiplier"] == pytest.approx(want, abs=1e-4)
        lam = pt["multiplier"]
    assert card["patient_model"] in ("calibrated", "uncalibrated") and len(card["patient_model_digest"]) == 12
    assert "--card-patients 3 --cost-budget 0.5 --cost-max 0.3 --ask-price 0.003 --widen 1.5" in card["reproduce"]
    ctl = LearnedController(scene="crowds", path=out / "policy.npz")
    cm = ctl.actor.meta["cost_model"]
    assert len(cm["w"]) == len(VECTOR_FIELDS) and cm["horizon_s"] == 60.0
    ctl.reset(1, np.linspace(0, 1, 11))
    info = ctl.propose(empty_observation(1)).info
    x = ctl.actor.normalize(np.clip(empty_observation(1).vector(), -10, 10))[0]
    assert info["cost_estimate"] == pytest.approx(max(0.0, float(x @ np.array(cm["w"]) + cm["b"])), abs=1e-3)
