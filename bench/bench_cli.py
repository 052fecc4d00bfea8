"""How long does ``exposure --help`` take to start? (goal: under 3× ``python -c "import numpy"``)

Times whole processes, interleaved, in the same run: ``python -m engine --help``, each
subcommand's ``--help``, and the reference ``python -c "import numpy"``. Prints the median of
``--repeat`` runs of each and the ratio to the reference.

    python bench/bench_cli.py [--repeat 15]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.cli import COMMANDS  # noqa: E402


def _time(cmd: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=15)
    a = ap.parse_args()
    py = sys.executable
    cases = {"python -c 'import numpy' (reference)": [py, "-c", "import numpy"],
             "exposure --help": [py, "-m", "engine", "--help"]}
    cases.update({f"exposure {c} --help": [py, "-m", "engine", c, "--help"] for c in COMMANDS})
    times: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(a.repeat):  # interleaved, so load changes hit every case alike
        for k, cmd in cases.items():
            times[k].append(_time(cmd))
    ref = statistics.median(times["python -c 'import numpy' (reference)"])
    print(f"median of {a.repeat} runs each, {sys.version.split()[0]}")
    for k, v in times.items():
        m = statistics.median(v)
        print(f"  {k:<42} {m * 1000:7.1f} ms   {m / ref:5.2f}× the reference")


if __name__ == "__main__":
    main()
