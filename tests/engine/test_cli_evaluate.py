"""``exposure evaluate`` as a real child process."""

from __future__ import annotations

import json

from tests.conftest import run_cli


def test_evaluate_json_has_every_metric_and_worst_decile():
    p = run_cli("evaluate", "--controllers", "ladder,hr-band,oracle", "--patients", "8", "--sessions", "2",
                "--minutes", "4", "--scene", "crowds", "--seed", "3", "--json", check=True)
    r = json.loads(p.stdout)
    assert set(r["controllers"]) == {"ladder", "hr-band", "oracle"}
    for m in r["controllers"].values():
        for k in ("responder_rate", "bat_steps_post", "top_suds_post", "dropout_rate", "escapes_per_patient",
                  "overwhelm_s_per_session", "window_fraction", "vr_minutes"):
            assert isinstance(m[k], float) and isinstance(m[k + "_worst10"], float)
    assert r["settings"]["scene"] == "crowds" and r["settings"]["patients"] == 8
    assert "structures" not in r


def test_evaluate_table_and_structures():
    p = run_cli("evaluate", "--controllers", "ladder,suds", "--patients", "4", "--sessions", "1", "--minutes", "3",
                "--structure", "all", "--workers", "1", check=True)
    for s in ("full", "habituation-only", "inhibitory-flat", "no-sensitisation", "abrupt-no-transfer"):
        assert f"structure: {s}" in p.stdout
    assert "worst decile" in p.stdout


def test_evaluate_bad_input_one_line_error(tmp_path):
    p = run_cli("evaluate", "--controllers", "ladder,nope", "--patients", "2")
    assert p.returncode == 2 and p.stderr.strip().startswith("exposure: error:") and "nope" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1
    bad = tmp_path / "pop.toml"
    bad.write_text('[priors]\nrest_hr = { dist = "normal", mean = 70, sd = -1 }\n')
    p = run_cli("evaluate", "--controllers", "ladder", "--patients", "2", "--population", str(bad))
    assert p.returncode == 2 and "priors.rest_hr" in p.stderr
    p = run_cli("evaluate", "--controllers", "ladder", "--patients", "2", "--structure", "flat")
    assert p.returncode == 2 and "--structure" in p.stderr
