"""The goal table of bench/bench_policy.py: each goal's threshold, and the card it writes deciding
whether the learned policy may be the default (policy.learned.goals_met)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from policy.learned import goals_met

_spec = importlib.util.spec_from_file_location("bench_policy", Path(__file__).parents[2] / "bench" / "bench_policy.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def _m(resp=0.80, over=0.0, esc=0.0, drop=0.08, bat=9.8, asks=0.0):
    return {"responder_rate": resp, "overwhelm_s_per_session": over, "escapes_per_patient": esc,
            "dropout_rate": drop, "bat_steps_post": bat, "suds_asks_per_min": asks}


def _res(**pol):
    return {"ladder": _m(resp=0.85, over=0.3, esc=0.003, drop=0.09, bat=9.8),
            "suds": _m(resp=0.60, over=0.0, esc=0.0, drop=0.08, bat=9.1, asks=0.9),
            "hr-band": _m(resp=0.86, over=0.0, esc=0.0, drop=0.08, bat=9.8),
            "hr-pid": _m(resp=0.83, over=5.0, esc=0.3, drop=0.07, bat=9.4),
            "oracle": _m(resp=0.90), "policy": _m(**pol)}


def _met(**pol):
    return {k: ok for k, (ok, _) in bench.goal_row(_res(**pol)).items()}


def test_every_goal_met_at_its_threshold_and_missed_just_beyond():
    at = dict(resp=0.89, over=0.1, esc=0.01, drop=0.08, bat=9.55, asks=0.5)
    assert all(_met(**at).values())
    # 1: ≥ best baseline (0.86) + 0.03 and ≥ oracle (0.90) − 0.02 → 0.89
    assert not _met(**{**at, "resp": 0.885})["1 responders"]
    # 2: the safest of ladder, SUDS, HR band: overwhelm 0 + 0.1, escapes 0 + 0.01 (HR PID's do not count)
    assert not _met(**{**at, "over": 0.11})["2 safety"]
    assert not _met(**{**at, "esc": 0.011})["2 safety"]
    # 3: the lowest baseline dropout, HR PID's 0.07, + 0.01
    assert _met(**at)["3 dropout"] and not _met(**{**at, "drop": 0.081})["3 dropout"]
    # 4: the ladder's 9.8 − 0.25
    assert not _met(**{**at, "bat": 9.54})["4 approach test"]
    # 5: at most 0.5 questions a minute
    assert not _met(**{**at, "asks": 0.51})["5 questions"]


def test_without_an_oracle_the_responder_goal_is_the_baseline_margin():
    res = _res(resp=0.89)
    del res["oracle"]
    ok, txt = bench.goal_row(res)["1 responders"]
    assert ok and "oracle –" in txt


@pytest.mark.parametrize("all_met", [True, False])
def test_the_card_written_decides_the_default(tmp_path, monkeypatch, all_met):
    d = tmp_path / "heights"
    d.mkdir()
    (d / "card.json").write_text(json.dumps({"scene": "heights", "patient_model": "calibrated"}))
    monkeypatch.setenv("EXPOSURE_POLICY_DIR", str(tmp_path))
    pol = dict(resp=0.95) if all_met else dict(resp=0.95, over=0.4)
    rows = [("default · full · chest", _res(**pol)), ("low-overwhelm · full · chest", _res(resp=0.95))]
    summary = {k: {"met": all(bench.goal_row(r)[k][0] for _, r in rows),
                   "missed": [n for n, r in rows if not bench.goal_row(r)[k][0]]} for k in bench.GOALS}
    args = SimpleNamespace(seed=777, patients=10, parts="chest,optical,populations")
    bench.write_card("heights", args, summary, rows, ["exposure evaluate …  (1 s)"])
    card = json.loads((d / "card.json").read_text())
    assert card["goals"]["commands"] == ["exposure evaluate …"]
    assert card["goals"]["rows"]["default · full · chest"]["2 safety"]["met"] is all_met
    ok, why = goals_met("heights")
    assert ok is all_met
    if not all_met:
        assert "2 safety" in why


def test_a_card_written_from_part_of_the_table_never_makes_the_policy_the_default(tmp_path, monkeypatch):
    d = tmp_path / "crowds"
    d.mkdir()
    (d / "card.json").write_text(json.dumps({"scene": "crowds", "patient_model": "calibrated"}))
    monkeypatch.setenv("EXPOSURE_POLICY_DIR", str(tmp_path))
    rows = [("default · full · chest", _res(resp=0.95))]
    summary = {k: {"met": True, "missed": []} for k in bench.GOALS}
    bench.write_card("crowds", SimpleNamespace(seed=777, patients=10, parts="chest"), summary, rows, ["x  (1 s)"])
    ok, why = goals_met("crowds")
    assert not ok and "complete table" in why


def test_compare_dir_judges_a_second_policy_on_the_same_patients_and_baselines(monkeypatch, tmp_path):
    # the shipped policy judged twice, once as the policy and once through --compare-dir: the
    # compared rows must carry the very same figures (evaluate gives every controller the same
    # random numbers whichever others run), with the main run's baselines
    monkeypatch.setattr(bench, "example_populations", lambda: ["low-overwhelm"])
    args = SimpleNamespace(patients=3, seed=5, workers=1, policy_dir=None, parts="populations",
                           compare_dir=str(Path(__file__).parents[2] / "policy" / "models"))
    rows, cmds, alt_rows, alt_cmds = bench.scene_table_rows("crowds", args, tmp_path / "optical.toml")
    assert [n for n, _ in rows] == [n for n, _ in alt_rows] == ["low-overwhelm · full · chest"]
    (_, res), (_, alt) = rows[0], alt_rows[0]
    assert set(alt) == set(res) == {"policy", "ladder", "suds", "hr-band", "hr-pid", "oracle"}
    assert alt == res
    assert "--controllers policy " in alt_cmds[0] and alt_cmds[0].startswith("EXPOSURE_POLICY_DIR=")
    assert bench.goal_row(alt) == bench.goal_row(res)
