"""README.md is assembled from docs/readme/ and keeps its two set-up commands at the top."""

import subprocess
import sys

from tests.conftest import ROOT


def test_readme_is_built_from_its_fragments():
    p = subprocess.run([sys.executable, "scripts/build_readme.py", "--check"], cwd=ROOT,
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr


def test_readme_starts_with_the_two_commands_and_ci_runs_the_second():
    text = (ROOT / "README.md").read_text()
    block = text.split("```bash", 1)[1].split("```", 1)[0]
    cmds = [ln.strip() for ln in block.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    assert cmds[0] == "pip install -e . && exposure demo"
    assert cmds[1] == "pip install -e '.[test]' && python -m pytest"
    assert cmds[1] in (ROOT / ".ci/run").read_text()
