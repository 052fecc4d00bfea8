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
from tests.conftest import cli_env, run_cli

ray = pytest.importorskip("ray", reason="Ray is the optional 'scale' extra: pip install -e '.[scale]'")

POP = load_population()
TABLE = scene_table("heights")
CONTROLLERS = ["ladder", "suds", "hr-band", "oracle", "policy"]


@pytest.fixture(scope="module")
def cluster():
    """One real Ray for the whole module (starting one takes seconds on a loaded machine)."""
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
        if running:  # a shard part-way through its course: kill its worker process
            os.kill(running[0]["pid"], signal.SIGKILL)
            killed.append(running[0]["pid"])

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
