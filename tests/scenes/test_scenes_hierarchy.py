"""Hierarchy files: the shipped ones load; every bad field is refused with its name."""

from __future__ import annotations

import bisect
import copy
import math
import tomllib

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from scenes.hierarchy import PARAMS, HierarchyError, hierarchy_path, load_hierarchy, parse_hierarchy


def shipped(scene):
    return tomllib.loads(hierarchy_path(scene).read_text())


@pytest.mark.parametrize("scene", ["heights", "crowds"])
def test_shipped_hierarchies_load_with_eleven_levels_and_default_rates(scene):
    h = load_hierarchy(scene)
    assert len(h.levels) == 11
    assert h.intensities[0] == 0.0 and h.intensities[-1] == 1.0
    assert set(PARAMS[scene]) <= set(h.levels[0].params)
    assert h.rates == {k: v[2] for k, v in PARAMS[scene].items()}


def test_heights_levels_are_dense_below_40_m():
    h = load_hierarchy("heights")
    below = [lv for lv in h.levels if lv.params["height_m"] <= 40]
    assert len(below) >= 7  # fear saturates above ~40 m: most levels spread below it
    assert h.params_at(0.5)["height_m"] == pytest.approx(
        h.levels[5].params["height_m"] + (0.5 - 0.46) / 0.1 * (31 - 25))


@pytest.mark.parametrize("mutate, field", [
    (lambda d: d["level"][3]["params"].pop("railing"), "level[3].params.railing is missing"),
    (lambda d: d["level"][2]["params"].__setitem__("wind", 1.5), "level[2].params.wind must be in [0, 1]"),
    (lambda d: d["level"][2]["params"].__setitem__("height_m", math.nan), "level[2].params.height_m must be a finite"),
    (lambda d: d["level"][1].__setitem__("intensity", 0.5), "level[2].intensity must be above"),
    (lambda d: d.__setitem__("rates", {"height_m": -1}), "rates.height_m must be a positive number"),
    (lambda d: d.__setitem__("rates", {"nope": 1}), "rates.nope names no parameter"),
    (lambda d: d.__setitem__("scene", "caves"), "field 'scene' must be one of"),
    (lambda d: d["level"][0].__setitem__("name", ""), "level[0].name must be a non-empty string"),
])
def test_bad_fields_are_named(mutate, field):
    d = shipped("heights")
    mutate(d)
    with pytest.raises(HierarchyError) as e:
        parse_hierarchy(d, "mine.toml")
    assert field in str(e.value)
    assert str(e.value).startswith("mine.toml")


def test_rates_can_be_set_per_parameter():
    d = shipped("crowds")
    d["rates"] = {"people": 2.5}
    h = parse_hierarchy(d)
    assert h.rates["people"] == 2.5 and h.rates["closest_m"] == PARAMS["crowds"]["closest_m"][2]


junk = st.one_of(st.none(), st.booleans(), st.integers(-5, 500), st.floats(allow_nan=True, allow_infinity=True),
                 st.text(max_size=5), st.lists(st.integers(), max_size=2),
                 st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))


@settings(max_examples=150, deadline=None)
@given(level=st.integers(0, 10), key=st.sampled_from(["name", "intensity", "params", "height_m", "wind", "railing"]),
       value=junk)
@example(level=0, key="intensity", value=0.0625)  # the first level off 0: the message names it
@example(level=10, key="intensity", value=0.99)  # the last level off 1
def test_any_junk_value_is_refused_cleanly_or_accepted_valid(level, key, value):
    d = copy.deepcopy(shipped("heights"))
    if key in ("name", "intensity", "params"):
        d["level"][level][key] = value
    else:
        d["level"][level]["params"][key] = value
    try:
        h = parse_hierarchy(d, "f.toml")
    except HierarchyError as e:
        msg = str(e)
        assert msg.startswith("f.toml") and f"level[{level}]" in msg or "level[" in msg
        return
    # accepted: then it is a valid hierarchy whose parameters are all finite and in range
    for lv in h.levels:
        for k, (lo, hi, _) in PARAMS["heights"].items():
            assert lo <= lv.params[k] <= hi


@settings(max_examples=100, deadline=None)
@given(st.recursive(st.one_of(st.none(), st.integers(), st.text(max_size=4), st.floats()),
                    lambda c: st.one_of(st.lists(c, max_size=3), st.dictionaries(st.text(max_size=4), c, max_size=3)),
                    max_leaves=12))
def test_arbitrary_documents_never_crash_the_parser(doc):
    with pytest.raises(HierarchyError):
        parse_hierarchy(doc if isinstance(doc, dict) else {"scene": "heights", "level": doc})


@settings(max_examples=200, deadline=None)
@given(x=st.floats(-0.5, 1.5, allow_nan=False), scene=st.sampled_from(["heights", "crowds"]))
def test_params_at_interpolates_like_numpy_and_is_the_same_for_one_or_many(x, scene):
    """One implementation serves the scene (a number) and the session/evaluator (arrays);
    numpy's ``interp`` is the reference for the piecewise-linear interpolation."""
    h = load_hierarchy(scene)
    one = h.params_at(x)
    many = h.params_at(np.array([x, 0.5, x]))
    xc = min(1.0, max(0.0, x))
    for k, v in one.items():
        assert isinstance(v, float)
        assert many[k][0] == many[k][2] == v
        ref = np.interp(xc, h.intensities, [lv.params[k] for lv in h.levels])
        assert v == pytest.approx(ref, rel=1e-9, abs=1e-6)
    lv = h.level_index(x)
    assert isinstance(lv, int) and h.level_index(np.array([x]))[0] == lv
    assert lv == max(0, min(bisect.bisect_right(h.intensities, x + 1e-9) - 1, len(h.levels) - 1))


def test_params_at_the_levels_are_the_levels():
    h = load_hierarchy("heights")
    got = h.params_at(np.array(h.intensities))
    for i, lv in enumerate(h.levels):
        assert {k: float(v[i]) for k, v in got.items()} == lv.params
        assert h.params_at(lv.intensity) == lv.params
