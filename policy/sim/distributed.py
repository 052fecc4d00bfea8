"""Population evaluation on a Ray cluster: the evaluator's patient shards as Ray tasks.

Why Ray and not our own pool: it runs the same code on one machine (``local``: an in-process
cluster with this machine's cores) and on many (``auto`` or ``ADDRESS``: a cluster started with
``ray start --head`` / ``ray start --address``), retries a task whose worker died
(``max_retries``), and moves the arguments and results between machines. The process pool of
:func:`policy.sim.evaluate.evaluate` (``--workers``) stays for one machine without Ray.

Why the answer is the same, bit for bit, as one process: every patient's random numbers come
from its own counter-based key (:func:`policy.sim.patient.noise.patient_keys` of the seed and the
patient's index), so a shard of patients ``start … start + n`` draws exactly what those patients
draw in a single run; the shards are put back in patient order before the metrics are averaged
(:func:`policy.sim.evaluate.assemble`). A retried shard recomputes the same numbers.

Ray is optional (``pip install 'exposure-engine[scale]'``); it is imported only here, and only
when ``--ray`` is asked for.
"""

from __future__ import annotations

import logging
import math
import os
import re
import socket
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from policy.errors import PolicyError

log = logging.getLogger(__name__)

INSTALL = "pip install 'exposure-engine[scale]' (from a checkout: pip install -e '.[scale]')"
#: the most patients per Ray task by default (the evaluator's chunk: memory). By default the patients
#: are split evenly over the cluster's CPUs, one task each, up to this size: the batch step costs
#: less per patient in big batches (measured: 0.45 M patient-seconds per CPU-second in shards of
#: 250 patients × 4 controllers, 0.65 M in shards of 500, 0.76 M in one batch of 1,000)
SHARD = 1000
#: how many times Ray re-runs a shard whose worker process or node died (not for errors in our code)
MAX_RETRIES = 3
_ADDRESS = re.compile(r"^(ray://)?[A-Za-z0-9_.\-]+:\d{1,5}$")


class DistributedError(PolicyError, RuntimeError):
    """Ray is missing, or the cluster cannot be reached or used; the message says what to do."""


def require_ray():
    """The ``ray`` module, or a one-line error saying how to install it."""
    try:
        import ray
    except ImportError:
        raise DistributedError(f"--ray needs Ray, which is not installed: {INSTALL}") from None
    return ray


def check_address(address: str) -> str:
    """``local``, ``auto``, ``HOST:PORT`` or ``ray://HOST:PORT``; anything else is refused."""
    if address in ("local", "auto") or _ADDRESS.match(address or ""):
        return address
    raise DistributedError(f"--ray {address!r}: give local, auto, HOST:PORT or ray://HOST:PORT")


@contextmanager
def ray_session(address: str, num_cpus: int | None = None, log_to_driver: bool = False) -> Iterator[object]:
    """Connect for the duration of a run and disconnect after.

    ``local`` starts an in-process Ray with ``num_cpus`` (default: this machine's cores); ``auto``
    joins the cluster this machine belongs to (``ray start``); ``HOST:PORT`` joins that head.
    If Ray is already initialised in this process (a notebook, a test), it is used as it is
    and left running. ``log_to_driver`` shows the workers' stderr here (training's log lines)."""
    check_address(address)
    ray = require_ray()
    if ray.is_initialized():
        yield ray
        return
    try:
        if address == "local":
            ray.init(num_cpus=num_cpus or os.cpu_count() or 1, include_dashboard=False,
                     logging_level=logging.WARNING, log_to_driver=log_to_driver)
        else:
            if num_cpus is not None:
                raise DistributedError("--workers sets the cores of --ray local; a cluster uses all of its cores")
            if address != "auto":
                _reachable(address)
            ray.init(address=address, logging_level=logging.WARNING, log_to_driver=log_to_driver)
    except DistributedError:
        raise
    except (ConnectionError, RuntimeError, ValueError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        hint = " (start one with 'ray start --head')" if address == "auto" else ""
        raise DistributedError(f"--ray {address}: cannot join the Ray cluster{hint}: {first}") from None
    try:
        yield ray
    finally:
        ray.shutdown()


def _reachable(address: str, timeout: float = 10.0) -> None:
    """Fail fast, in one line, when nothing listens at ``address`` (Ray itself retries for minutes)."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as e:
        raise DistributedError(f"--ray {address}: no Ray head answers there ({e.strerror or e}); "
                               "on the head machine run 'ray start --head' and use the address it prints") from None


def reraise_task_error(e) -> None:
    """A task's own error: ours (a bad setting) as itself, in one line; anything else as Ray gives it."""
    cause = getattr(e, "cause", None)
    if isinstance(cause, PolicyError):
        raise cause from None
    raise e


def cluster_cpus(ray) -> int:
    return max(1, int(ray.cluster_resources().get("CPU", 1)))


# --------------------------------------------------------------------------- the progress board
class ProgressBoard:
    """A Ray actor the shards report to: per shard, its worker's process id, how many times it
    started (a retry starts it again) and how many of its patients have finished how many
    sessions. A retried shard's count starts from zero again, so nothing is counted twice."""

    def __init__(self) -> None:
        self.shards: dict[int, dict] = {}

    def begin(self, shard: int, pid: int, node: str) -> None:
        s = self.shards.setdefault(shard, {"attempts": 0})
        s.update(attempts=s["attempts"] + 1, pid=pid, node=node, patient_sessions=0)

    def update(self, shard: int, patient_sessions: int) -> None:
        self.shards[shard]["patient_sessions"] = patient_sessions

    def finish(self, shard: int, cpu_seconds: float) -> None:
        self.shards[shard]["cpu_seconds"] = cpu_seconds

    def read(self) -> dict[int, dict]:
        return self.shards


@dataclass
class RayRun:
    """What a distributed run did besides its result (for the progress bar, the logs and tests)."""

    shards: int = 0
    cpus: int = 0
    retries: int = 0
    board: dict = field(default_factory=dict)

    @property
    def cpu_seconds(self) -> float:
        """CPU time the finished shards took in their workers (the last attempt of each)."""
        return sum(s.get("cpu_seconds", 0.0) for s in self.board.values())


def _run_shard(job, args, structure: str, start: int, n: int, shard: int, board):
    """One Ray task: ``job`` (the evaluator's course for patients ``start … start + n``)."""
    import ray

    ctx = ray.get_runtime_context()
    ray.get(board.begin.remote(shard, os.getpid(), ctx.get_node_id()))
    cpu = time.process_time()
    out = job(args, structure, start, n, lambda s, k: board.update.remote(shard, s * n))
    ray.get(board.finish.remote(shard, time.process_time() - cpu))
    return out


def run_jobs(job, args, structures: list[str], n_patients: int, sessions: int, address: str, *,
             shard: int | None = None, num_cpus: int | None = None, progress: bool = False,
             on_progress: Callable[[RayRun], None] | None = None,
             max_retries: int = MAX_RETRIES) -> tuple[list, dict, RayRun]:
    """Run the evaluator's ``jobs`` ((structure, first patient, patients) each) as Ray tasks, each
    calling ``job(args, structure, first patient, patients, progress)`` (``evaluate._job``, passed
    in so that this module does not import the evaluator that imports it).

    The jobs are :func:`shard_jobs` of the cluster's CPUs. Returns
    ``(jobs, {(structure, first patient): CourseResult}, RayRun)``. ``on_progress(run)`` is
    called in this process each time the board is read (about twice a second and after each
    shard), with ``run.board`` as the board reports it."""
    with ray_session(address, num_cpus) as ray:
        cpus = cluster_cpus(ray)
        jobs = shard_jobs(structures, n_patients, shard, cpus)
        run = RayRun(shards=len(jobs), cpus=cpus)
        board = ray.remote(num_cpus=0)(ProgressBoard).remote()
        task = ray.remote(_run_shard).options(num_cpus=1, max_retries=max_retries, retry_exceptions=False)
        args_ref = ray.put(args)
        refs = {task.remote(job, args_ref, st, start, n, i, board): (i, st, start, n)
                for i, (st, start, n) in enumerate(jobs)}
        total = sum(n for _, _, n in jobs)
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=total, unit=" patients", file=sys.stderr, leave=False, dynamic_ncols=True,
                       desc=f"ray ({run.cpus} cpus)",
                       bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total} patients "
                                  "[{elapsed}<{remaining}]")
        parts = {}
        pending = list(refs)
        try:
            while pending:
                ready, pending = ray.wait(pending, num_returns=1, timeout=0.5)
                for r in ready:
                    i, st, start, n = refs[r]
                    try:
                        parts[st, start] = ray.get(r)
                    except ray.exceptions.RayTaskError as e:
                        reraise_task_error(e)
                    except ray.exceptions.RayError as e:
                        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
                        raise DistributedError(f"--ray: shard {i} (patients {start}–{start + n - 1}) failed "
                                               f"after {max_retries} retries: {first}") from None
                run.board = ray.get(board.read.remote())
                run.retries = sum(s["attempts"] - 1 for s in run.board.values())
                if bar is not None:
                    done_ps = sum(s["patient_sessions"] for s in run.board.values())
                    bar.n = min(total, done_ps / max(sessions, 1))
                    bar.refresh()
                if on_progress is not None:
                    on_progress(run)
        finally:
            if bar is not None:
                bar.close()
            for r in pending:
                ray.cancel(r, force=True)
        if run.retries:
            log.warning("ray: %d shard(s) were retried after a worker was lost; the results are unaffected",
                        run.retries)
        return jobs, parts, run


def shard_jobs(structures: list[str], n_patients: int, shard: int | None = None,
               cpus: int = 1) -> list[tuple[str, int, int]]:
    """(structure, first patient, patients) per task: ``shard`` patients each (default: the patients
    split evenly over ``cpus``, at most :data:`SHARD` each)."""
    size = max(1, shard or min(SHARD, math.ceil(n_patients / max(1, cpus))))
    return [(st, start, min(size, n_patients - start)) for st in structures for start in range(0, n_patients, size)]

