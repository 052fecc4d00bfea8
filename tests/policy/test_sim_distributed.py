"""``evaluate --ray``: patient shards as tasks on a real local Ray (one cluster for the module),
the same JSON bit for bit as one process, a worker killed mid-run retried, and clear errors."""

from __future__ import annotations

import json
import os
import signal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.gym_env import scene_table
from policy.sim import distributed
from policy.sim.distributed import DistributedError, check_address, shard_jobs
from policy.sim.evaluate import evaluate
from policy.sim.patient.population import load_population
from policy.train.sweep import configure, plan, run_score, sweep, train_run
from policy.train.trainer import TrainConfig, TrainError
from tests.conftest import cli_env, run_cli

POP = load_population()
TABLE = scene_table("heights")
CONTROLLERS = ["ladder", "suds", "hr-band", "oracle", "policy"]


@pytest.fixture(scope="module")
def cluster():
    """One real Ray for the whole module (starting one takes seconds on a loaded machine)."""
    ray = pytest.importorskip("ray", reason="Ray is the optional 'scale' extra: pip install -e '.[scale]'")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def as_json(result: dict) -> str:
    return json.dumps(result, indent=1)


def test_shards_cover_every_patient_once_in_order():
    jobs = shard_jobs(["full", "habituation-only"], 10, 4)
    assert jobs == [("full", 0, 4), ("full", 4, 4), ("full", 8, 2),
                    ("habituation-only", 0, 4), ("habituation-only", 4, 4), ("habituation-only", 8, 2)]
    assert shard_jobs(["full"], 3, None) == [("full", 0, 3)]
    # by default the patients are split evenly over the CPUs, at most 1,000 a task
    assert shard_jobs(["full"], 1000, None, cpus=2) == [("full", 0, 500), ("full", 500, 500)]
    assert [n for _, _, n in shard_jobs(["full"], 2500, None, cpus=2)] == [1000, 1000, 500]


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.text(max_size=30), st.from_regex(r"(ray://)?[a-z0-9.\-]{1,12}:\d{1,5}", fullmatch=True)))
def test_addresses_are_checked_before_anything_starts(text):
    try:
        assert check_address(text) == text
    except DistributedError as e:
        assert str(e).startswith("--ray ") and "\n" not in str(e)
        return
    assert text in ("local", "auto") or ":" in text


def test_ray_gives_the_same_json_bit_for_bit(cluster):
    kw = dict(sessions=2, minutes=4, seed=2, structure="all")
    one = evaluate(POP, TABLE, CONTROLLERS, 12, workers=1, **kw)
    runs = []
    sharded = evaluate(POP, TABLE, CONTROLLERS, 12, ray="local", shard=5, **kw,
                       ray_options={"on_progress": runs.append})
    assert as_json(sharded) == as_json(one)
    last = runs[-1]
    assert last.shards == 3 * 5 and last.cpus == 2 and last.retries == 0
    # every shard reported every session of its patients: the board adds up to the whole population
    assert sum(s["patient_sessions"] for s in last.board.values()) == 5 * 12 * 2
    assert all(s["cpu_seconds"] > 0 and s["attempts"] == 1 for s in last.board.values())
    # and the result is not the same whatever the seed (the comparison above can fail)
    other = evaluate(POP, TABLE, CONTROLLERS, 12, ray="local", shard=5, **{**kw, "seed": 3})
    assert as_json(other) != as_json(one)


def test_a_worker_killed_mid_run_is_retried_and_the_json_is_identical(cluster):
    kw = dict(sessions=4, minutes=5, seed=4)
    one = evaluate(POP, TABLE, CONTROLLERS, 24, workers=1, **kw)
    killed: list[int] = []

    def kill_one(run):
        if killed:
            return
        running = [s for s in run.board.values() if 0 < s["patient_sessions"] < 6 * 4]
        if running:  # a shard part-way through its course (the least advanced): kill its worker process
            victim = min(running, key=lambda s: s["patient_sessions"])["pid"]
            assert victim != os.getpid()
            os.kill(victim, signal.SIGKILL)
            killed.append(victim)

    runs = []
    got = evaluate(POP, TABLE, CONTROLLERS, 24, ray="local", shard=6, **kw,
                   ray_options={"on_progress": lambda r: (kill_one(r), runs.append(r))})
    assert killed, "no shard was caught part-way through"
    assert runs[-1].retries >= 1
    assert as_json(got) == as_json(one)


def test_cli_joins_a_cluster_by_address_with_the_same_json(cluster):
    args = ("evaluate", "--controllers", "ladder,hr-band", "--patients", "9", "--sessions", "1", "--minutes", "3",
            "--seed", "5", "--json", "--no-progress")
    single = run_cli(*args, "--workers", "1", check=True)
    joined = run_cli(*args, "--ray", cluster, "--shard", "4", check=True)
    assert joined.stdout == single.stdout
    assert json.loads(joined.stdout)["settings"]["patients"] == 9


def test_cli_ray_local_starts_its_own_ray(cluster):
    args = ("evaluate", "--controllers", "ladder,suds", "--patients", "5", "--sessions", "1", "--minutes", "2",
            "--seed", "1", "--json", "--no-progress")
    single = run_cli(*args, "--workers", "1", check=True)
    local = run_cli(*args, "--ray", "local", "--workers", "1", "--shard", "2", check=True)
    assert local.stdout == single.stdout


def test_cli_ray_errors_are_one_line(cluster, tmp_path):
    base = ("evaluate", "--controllers", "ladder", "--patients", "2", "--sessions", "1", "--minutes", "2")
    for extra, msg in ((("--ray", "not an address"), "give local, auto, HOST:PORT"),
                       (("--ray", "127.0.0.1:1"), "no Ray head answers there"),
                       (("--ray", cluster, "--workers", "2"), "a cluster uses all of its cores"),
                       (("--shard", "3"), "--shard applies to --ray runs")):
        p = run_cli(*base, *extra)
        assert p.returncode == 2, p.stderr
        lines = [x for x in p.stderr.strip().splitlines() if x.startswith("exposure")]
        assert len(lines) == 1 and lines[0].startswith("exposure: error:") and msg in lines[0], p.stderr
        assert "Traceback" not in p.stderr


def test_without_ray_the_flags_say_how_to_install_it(tmp_path):
    hidden = tmp_path / "hide"
    (hidden / "ray").mkdir(parents=True)
    (hidden / "ray" / "__init__.py").write_text("raise ImportError('ray hidden for this test')\n")
    env = cli_env()
    env["PYTHONPATH"] = str(hidden) + os.pathsep + env["PYTHONPATH"]
    for args in (("evaluate", "--controllers", "ladder", "--patients", "2", "--ray"),
                 ("evaluate", "--controllers", "ladder", "--patients", "2", "--ray", "auto"),
                 ("train", "--seeds", "2", "--ray")):
        p = run_cli(*args, env=env)
        assert p.returncode == 2, p.stderr
        assert p.stderr.strip().splitlines() == [
            "exposure: error: --ray needs Ray, which is not installed: " + distributed.INSTALL]


# --------------------------------------------------------------------------- training sweeps
SHORT_COURSE = """
name = "short"
[sessions]
count = 2
minutes = 2
"""


def test_grid_file_plans_every_combination_for_every_seed(tmp_path):
    g = tmp_path / "grid.toml"
    g.write_text("seeds = [3, 7]\n[grid]\nlearning_rate = [3e-4, 1e-4]\nnet_arch = [[32, 32]]\n")
    runs = plan(1, 0, g)
    assert [(r.settings["learning_rate"], r.settings["seed"]) for r in runs] == [
        (3e-4, 3), (3e-4, 7), (1e-4, 3), (1e-4, 7)]
    assert all(r.settings["net_arch"] == (32, 32) and len(r.settings) == 3 for r in runs)
    assert len({r.name for r in runs}) == 4
    assert [r.settings for r in plan(3, 5)] == [{"seed": 5}, {"seed": 6}, {"seed": 7}]


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=60))
def test_a_bad_grid_file_is_one_clear_error(tmp_path_factory, text):
    g = tmp_path_factory.mktemp("g") / "grid.toml"
    g.write_text(text)
    try:
        runs = plan(2, 0, g)
    except TrainError as e:
        assert str(e).startswith("--grid ") and "\n" not in str(e).strip()
        return
    assert runs and all("seed" in r.settings for r in runs)


def test_seeds_train_as_ray_tasks_and_the_best_is_kept(cluster, tmp_path):
    pop = tmp_path / "short.toml"
    pop.write_text(SHORT_COURSE)
    base = TrainConfig(scene="crowds", scene_table=scene_table("crowds"), timesteps=1024, n_envs=16, n_sub=2,
                       n_steps=32, batch_size=256, n_epochs=1, eval_every=512, eval_patients=6, card_patients=3,
                       population=str(pop))
    out = tmp_path / "sweep"
    logs: list[str] = []
    res = sweep(base, plan(2, 11), out, ray="local", log=logs.append)
    summary = json.loads((out / "sweep.json").read_text())
    assert [r["name"] for r in summary["runs"]] == ["run00-seed11", "run01-seed12"]
    cards = {r["name"]: json.loads((out / "runs" / r["name"] / "card.json").read_text()) for r in summary["runs"]}
    assert [c["seed"] for c in cards.values()] == [11, 12]
    for name, card in cards.items():
        assert "short.toml (sha256 " in card["population"]
        assert summary["runs"][int(name[3:5])]["score"] == pytest.approx(run_score(card))
    scores = [r["score"] for r in summary["runs"]]
    assert res.best == summary["best"] == summary["runs"][scores.index(max(scores))]["name"]
    for f in ("policy.npz", "model.zip", "card.json", "card.md", "vecnormalize.pkl"):
        assert (out / f).read_bytes() == (out / "runs" / res.best / f).read_bytes()
    # the same seed trains the same actor in a Ray task as in this process
    alone = train_run(configure(base, plan(1, 11))[0], None)
    assert alone["policy.npz"] == (out / "runs" / "run00-seed11" / "policy.npz").read_bytes()
