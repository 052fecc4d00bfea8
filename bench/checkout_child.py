"""Run a benchmark's child script against another checkout (a reference measured in the same run).

Shared by the benches that compare this checkout with an older one (bench_env, bench_evaluator):
the child runs with ``PYTHONPATH`` and the working folder set to the checkout, prints one JSON
line last with a ``from`` field naming the ``policy`` package it imported, and this checks that it
really imported the checkout's code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def run_in_checkout(name: str, path: Path, child: str, *args) -> dict:
    """The last JSON line the ``child`` script printed, run in the checkout at ``path``; exits
    with a one-line reason (and the child's error) if it failed or imported another checkout."""
    env = dict(os.environ, PYTHONPATH=str(path))
    p = subprocess.run([sys.executable, "-c", child, *map(str, args)], capture_output=True, text=True,
                       cwd=path, env=env)
    if p.returncode != 0:
        sys.exit(f"{name}: the run in {path} failed:\n{p.stderr[-2000:]}")
    out = json.loads(p.stdout.strip().splitlines()[-1])
    if not out["from"].startswith(str(path)):
        sys.exit(f"{name}: {path} imported policy from {out['from']}")
    return out
