"""Training sweeps: several seeds (or a small grid of settings) trained as separate runs, in this
process one after the other or as Ray tasks on a cluster; the best run by validation is kept.

``exposure train --seeds K [--grid FILE.toml] [--ray [local|auto|ADDRESS]] --out DIR`` calls
:func:`sweep`. Every run trains with :func:`policy.train.trainer.train` exactly as a single
``exposure train`` would, into a folder of its own, and is judged on the same validation
patients (``trainer.VALIDATION_SEED``) with the trainer's own :func:`~policy.train.trainer.score`
of its kept actor against the baselines. ``DIR/runs/NAME/`` holds every run's files and model
card; the best run's files are also copied to ``DIR/`` itself; ``DIR/sweep.json`` lists every
run, its settings, its score and which one was kept.

A Ray task trains in a temporary folder on whichever machine runs it and sends its files back
as bytes, so a cluster needs no shared file system. Picking the best of K on the validation
patients flatters the winner's validation figures; judge it with ``exposure evaluate`` (other
patients), as ``sweep.json`` says.

A grid file::

    seeds = [0, 1]              # optional: default --seed … --seed + --seeds − 1
    [grid]                      # every combination of these is trained for every seed
    learning_rate = [3e-4, 1e-4]
    ent_coef = [0.0, 0.005]
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import shutil
import sys
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path

from policy.train.trainer import TrainConfig, TrainError, _reference, card_markdown, score, train

#: the settings a grid may vary (TrainConfig fields); anything else is refused by name
GRID_KEYS = ("timesteps", "n_envs", "n_sub", "eval_every", "patience", "net_arch", "learning_rate", "n_steps",
             "batch_size", "n_epochs", "gamma", "gae_lambda", "ent_coef", "top_shaping", "overwhelm_extra",
             "eval_patients", "card_patients")
FILES = ("policy.npz", "model.zip", "vecnormalize.pkl", "card.json", "card.md")
MAX_RUNS = 256


@dataclass(frozen=True)
class Run:
    name: str
    settings: dict  # TrainConfig fields this run sets (seed included)


@dataclass
class SweepResult:
    out: Path
    best: str
    runs: list[dict]  # name, settings, score, validation metrics of the kept actor


def plan(seeds: int, first_seed: int = 0, grid: Path | None = None) -> list[Run]:
    """The runs: ``seeds`` seeds from ``first_seed`` (or the grid file's ``seeds``), times the grid."""
    if not isinstance(seeds, int) or seeds < 1:
        raise TrainError(f"--seeds must be a positive integer, not {seeds!r}")
    seed_list = list(range(first_seed, first_seed + seeds))
    axes: dict[str, list] = {}
    if grid is not None:
        try:
            data = tomllib.loads(Path(grid).read_text(encoding="utf-8"))
        except OSError as e:
            raise TrainError(f"--grid: cannot read {grid}: {e.strerror or e}") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise TrainError(f"--grid {grid}: not a TOML file: {e}") from None
        unknown = set(data) - {"seeds", "grid"}
        if unknown:
            raise TrainError(f"--grid {grid}: unknown key {sorted(unknown)[0]!r}: use seeds and [grid]")
        if "seeds" in data:
            s = data["seeds"]
            if not (isinstance(s, list) and s and all(isinstance(x, int) and not isinstance(x, bool) and x >= 0
                                                       for x in s)) or len(set(s)) != len(s):
                raise TrainError(f"--grid {grid}: seeds must be a list of distinct non-negative integers")
            seed_list = s
        g = data.get("grid", {})
        if not isinstance(g, dict):
            raise TrainError(f"--grid {grid}: [grid] must be a table of lists")
        for k, v in g.items():
            if k not in GRID_KEYS:
                raise TrainError(f"--grid {grid}: grid.{k} cannot be varied: choose from {', '.join(GRID_KEYS)}")
            if not isinstance(v, list) or not v:
                raise TrainError(f"--grid {grid}: grid.{k} must be a non-empty list of values")
            axes[k] = [tuple(x) if isinstance(x, list) else x for x in v]
    combos = [dict(zip(axes, c, strict=True)) for c in itertools.product(*axes.values())] or [{}]
    if len(seed_list) * len(combos) > MAX_RUNS:
        raise TrainError(f"the sweep asks for {len(seed_list) * len(combos)} runs; at most {MAX_RUNS}")
    runs = []
    for i, (combo, seed) in enumerate(itertools.product(combos, seed_list)):
        label = "-".join(f"{k}={_short(v)}" for k, v in combo.items())
        runs.append(Run(f"run{i:02d}-seed{seed}" + (f"-{label}" if label else ""), {**combo, "seed": seed}))
    return runs


def _short(v) -> str:
    return "x".join(map(str, v)) if isinstance(v, tuple) else f"{v:g}" if isinstance(v, float) else str(v)


def configure(base: TrainConfig, runs: list[Run]) -> list[TrainConfig]:
    """Each run's validated TrainConfig (all checked before anything trains or starts)."""
    out = []
    for r in runs:
        try:
            out.append(TrainConfig(**{**base.__dict__, **r.settings, "progress": False}).validated())
        except TrainError as e:
            raise TrainError(f"{r.name}: {e}") from None
        except TypeError as e:
            raise TrainError(f"{r.name}: {e}") from None
    return out


def train_run(cfg: TrainConfig, population: tuple[str, bytes] | None) -> dict[str, bytes]:
    """Train one run in a temporary folder (here or on a Ray worker); its files as bytes.

    ``population`` is (path, contents) of the population file on the machine that planned the
    sweep: a worker without that file (another machine) trains on a copy, and the card keeps the
    original's name and digest."""
    with tempfile.TemporaryDirectory(prefix="exposure-run-") as d:
        over: dict = {"out": Path(d) / "out"}
        label = None
        if population is not None:
            path, data = population
            p = Path(path)
            if not (p.is_file() and p.read_bytes() == data):
                copy = Path(d) / p.name
                copy.write_bytes(data)
                over["population"] = str(copy)
                label = f"{path} (sha256 {hashlib.sha256(data).hexdigest()[:12]})"
        cfg = TrainConfig(**{**cfg.__dict__, **over})
        res = train(cfg, log=lambda msg: print(f"[seed {cfg.seed}] {msg}", file=sys.stderr, flush=True))
        if label is not None:
            card = {**res.card, "population": label}
            (res.out / "card.json").write_text(json.dumps(card, indent=2, sort_keys=True) + "\n")
            (res.out / "card.md").write_text(card_markdown(card))
        return {f: (res.out / f).read_bytes() for f in FILES}


def run_score(card: dict) -> float:
    """The trainer's score of a run's kept actor against the best baseline on the validation patients."""
    val = card["validation"]["results"]
    pol = val.get("policy")
    if not pol:
        return -math.inf
    return score(pol, _reference({k: m for k, m in val.items() if k not in ("policy", "oracle") and m}))


def sweep(base: TrainConfig, runs: list[Run], out: Path, ray: str | None = None, num_cpus: int | None = None,
          log=None, progress: bool = False) -> SweepResult:
    """Train ``runs`` (in this process, or as Ray tasks with ``ray``), write them all, keep the best."""
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    cfgs = configure(base, runs)
    out = Path(out)
    pop = None
    if base.population is not None:
        pop = (str(base.population), Path(base.population).read_bytes())
    files: dict[str, dict[str, bytes]] = {}
    if ray is None:
        for r, cfg in zip(runs, cfgs, strict=True):
            log(f"{r.name}: training…")
            files[r.name] = train_run(cfg, pop)
    else:
        files = _on_ray(runs, cfgs, pop, ray, num_cpus, log, progress)
    table = []
    for r in runs:
        d = out / "runs" / r.name
        d.mkdir(parents=True, exist_ok=True)
        for f, data in files[r.name].items():
            (d / f).write_bytes(data)
        card = json.loads(files[r.name]["card.json"])
        pol = card["validation"]["results"].get("policy") or {}
        table.append({"name": r.name, "settings": {k: list(v) if isinstance(v, tuple) else v
                                                   for k, v in r.settings.items()},
                      "score": run_score(card), "timesteps_kept": card["timesteps_kept"],
                      "validation": {k: pol.get(k) for k in ("responder_rate", "dropout_rate",
                                                             "overwhelm_s_per_session")}})
    best = max(table, key=lambda t: t["score"])  # the first of equals
    for f in FILES:
        shutil.copyfile(out / "runs" / best["name"] / f, out / f)
    summary = {"best": best["name"], "selected_by": "trainer score on the validation patients "
               "(responders, penalised for more dropout or overwhelm than the baselines)",
               "caveat": "The best of several runs on the validation patients looks better there than it is: "
                         "judge it with 'exposure evaluate' on other patients.",
               "runs": [{**t, "score": None if t["score"] == -math.inf else t["score"]} for t in table]}
    (out / "sweep.json").write_text(json.dumps(summary, indent=2) + "\n")
    return SweepResult(out, best["name"], summary["runs"])


def _on_ray(runs, cfgs, pop, address, num_cpus, log, progress) -> dict[str, dict[str, bytes]]:
    from policy.sim.distributed import MAX_RETRIES, DistributedError, ray_session, reraise_task_error

    with ray_session(address, num_cpus, log_to_driver=True) as ray:
        task = ray.remote(train_run)
        refs = {task.options(num_cpus=cfg.threads, max_retries=MAX_RETRIES, retry_exceptions=False)
                .remote(cfg, pop): r for r, cfg in zip(runs, cfgs, strict=True)}
        log(f"{len(refs)} training runs as Ray tasks on {int(ray.cluster_resources().get('CPU', 0))} cpus…")
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(refs), unit=" runs", file=sys.stderr, desc="sweep", dynamic_ncols=True)
        files, pending = {}, list(refs)
        try:
            while pending:
                ready, pending = ray.wait(pending, num_returns=1)
                r = refs[ready[0]]
                try:
                    files[r.name] = ray.get(ready[0])
                except ray.exceptions.RayTaskError as e:
                    reraise_task_error(e)
                except ray.exceptions.RayError as e:
                    first = (str(e).strip().splitlines() or [type(e).__name__])[0]
                    raise DistributedError(f"--ray: {r.name} failed after {MAX_RETRIES} retries: {first}") from None
                log(f"{r.name}: done")
                if bar is not None:
                    bar.update(1)
        finally:
            if bar is not None:
                bar.close()
            for ref in pending:
                ray.cancel(ref, force=True)
        return files
