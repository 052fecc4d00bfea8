"""What a newcomer sees first: the demo's summary reads as a person would want it."""

from __future__ import annotations

import re

from tests.conftest import run_cli


def test_the_demo_summary_says_things_once_briefly_and_with_reasons(tmp_path):
    p = run_cli("demo", "--duration", "20m", "--sessions-dir", tmp_path / "D", check=True)
    out = p.stdout
    assert not re.search(r"\b(\w+): \1:", out), out  # no "policy: policy: step up"
    suds = next(line for line in out.splitlines() if line.strip().startswith("SUDS answers:"))
    assert len(suds) <= 110, suds  # not 76 numbers on one line
    assert re.search(r"SUDS answers: \d+ — first \d+, peak \d+, last \d+", suds) or suds.count(",") < 8
    shield = next(line for line in out.splitlines() if "safety shield interventions" in line)
    n = int(re.search(r"interventions: (\d+)", shield).group(1))
    if n:
        reasons = re.search(r"\((.*)\)$", shield).group(1)
        assert sum(int(k) for k in re.findall(r"(\d+) × ", reasons)) == n
    assert "WARNING" not in p.stderr and "Traceback" not in p.stderr
