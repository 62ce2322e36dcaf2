"""What the Ray cluster can run (Ray, no training): the resource arithmetic of training, sweeps, the decode pool and
batch inference, the checks that refuse what can never fit, and the notice while work waits for resources."""
from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterator

import ray
from ray.util import placement_group_table

from tmtvis.errors import TmtvisError

if TYPE_CHECKING:  # the config module imports torch; the decode actors that import this module never need it
    from tmtvis.config import Config

log = logging.getLogger(__name__)


def may_grow(address: str | None) -> bool:
    """Whether the cluster may gain nodes: a local Ray never does; of a cluster Ray's API cannot tell us."""
    return bool(address or os.environ.get("RAY_ADDRESS"))


def worker_resources(cfg: Config) -> dict[str, float]:
    """What one Ray Train worker asks for."""
    resources = {"CPU": cfg.scaling.cpus_per_worker}
    if cfg.scaling.gpus_per_worker > 0:
        resources["GPU"] = cfg.scaling.gpus_per_worker
    return resources


def check_cluster(cfg: Config, can_grow: bool, local_store: bool = False) -> None:
    """Refuse, in one line and before anything starts, what this cluster can never run.

    Several nodes and `local_store` (tracking on, no server configured): the default SQLite store would be written
    from two machines. Workers that fit no node: without an autoscaler Ray Train would wait for them forever.
    """
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    if local_store and len(nodes) > 1:
        raise TmtvisError(f"this Ray cluster has {len(nodes)} nodes and no MLflow tracking URI is set: start "
                          "`mlflow server` where every node can reach it and pass --tracking-uri http://HOST:PORT "
                          "(or set tracking.tracking_uri / MLFLOW_TRACKING_URI)")
    if can_grow:
        return
    need, workers = worker_resources(cfg), cfg.scaling.workers
    fit = sum(min(int(n["Resources"].get(k, 0.0) / v + 1e-9) for k, v in need.items() if v > 0) for n in nodes)
    if fit >= workers:
        return
    total = ray.cluster_resources()
    if "GPU" in need and total.get("GPU", 0.0) < need["GPU"] * workers:
        raise TmtvisError(f"scaling.gpus_per_worker={need['GPU']:g}: {workers} workers need "
                          f"{need['GPU'] * workers:g} GPUs and this Ray cluster has {total.get('GPU', 0.0):g} "
                          "and no autoscaler (set scaling.gpus_per_worker=0 to train on CPUs)")
    raise TmtvisError(f"scaling.workers={workers} x scaling.cpus_per_worker={need['CPU']:g}: only {fit} such workers "
                      f"fit this Ray cluster ({total.get('CPU', 0.0):g} CPUs, no autoscaler); lower them")


@contextlib.contextmanager
def report_pending(every_s: float | None = None, first_s: float = 2.0) -> Iterator[None]:
    """While the block runs, console lines on the placement groups that wait for resources: the first once one
    has been pending at two checks in a row (`first_s` apart), then one every `every_s` seconds (default 30).
    On an autoscaling cluster training starts only once new nodes have joined."""
    every_s = every_s or float(os.environ.get("TMTVIS_PENDING_REPORT_S", "30"))
    poll = min(first_s, every_s)
    stop = threading.Event()

    def watch() -> None:
        start, last, before = time.monotonic(), None, set()
        while not stop.wait(poll):
            try:
                table = placement_group_table()
                free, total = ray.available_resources(), ray.cluster_resources()
            except Exception:  # the session is closing
                return
            now = time.monotonic()
            pending = {k for k, pg in table.items() if pg.get("state") == "PENDING"}
            stuck, before = [table[k] for k in pending & before], pending  # pending at two checks in a row
            if not stuck or (last is not None and now - last < every_s - 1e-3):
                continue
            shapes = "; ".join(f"{len(pg['bundles'])} x {dict(pg['bundles'][0])}" for pg in stuck[:3])
            have = ", ".join(f"{k} {free.get(k, 0.0):g}/{total[k]:g}" for k in ("CPU", "GPU") if k in total)
            if last is None:
                log.info("waiting for resources: %d placement group(s) pending (%s); free/total: %s; training "
                         "starts once the cluster has them (Ctrl-C stops)", len(stuck), shapes, have or "none")
            else:
                log.info("waiting %.0f s for resources: %d placement group(s) pending (%s); free/total: %s",
                         now - start, len(stuck), shapes, have or "none")
            last = now

    thread = threading.Thread(target=watch, name="tmtvis-pending", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()


def max_concurrent_trials(cfg: Config, resources: dict[str, float]) -> int:
    """Trials that fit the cluster at once: each needs its Train workers plus one decode actor's CPUs (none when
    decoding runs on nodes of its own, data.decode_resources)."""
    t = cfg.scaling
    decode = 0.0 if cfg.data.decode_resources else cfg.data.decode_cpus
    n = int(resources.get("CPU", 0) // (t.workers * t.cpus_per_worker + decode))
    if t.gpus_per_worker > 0:
        n = min(n, int(resources.get("GPU", 0) // (t.workers * t.gpus_per_worker)))
    return max(1, n)


def trial_concurrency(cfg: Config, max_concurrent: int | None, can_grow: bool,
                      resources: dict[str, float]) -> int | None:
    """How many trials Tune may run at once (None: all).

    On a cluster that may grow, every trial starts and its Train worker group queues for resources in Ray,
    so an autoscaler sees the whole demand; --max-concurrent is then only an upper bound. A local Ray never
    grows: trials beyond what fits would take the CPUs the running trials' data pipelines need.
    """
    if can_grow:
        return max_concurrent
    fit = max_concurrent_trials(cfg, resources)
    return min(fit, max_concurrent) if max_concurrent else fit


@dataclass
class DecodePool:
    """Where decoding runs: the actor pool's size and what each actor asks for."""

    min_size: int = 1
    max_size: int = 1
    num_cpus: float = 1.0
    resources: dict[str, float] = field(default_factory=dict)


def decode_pool(num_cpus: float, resources: dict[str, float], max_actors: int, reserved_cpus: float) -> DecodePool:
    """The decode pool: up to `max_actors` actors, or (0) as many as the live cluster fits: with custom
    `resources`, on the nodes holding them; otherwise in the CPUs left after `reserved_cpus` (the Train workers).
    At least 1."""
    need = {"CPU": num_cpus, **resources} if num_cpus > 0 else dict(resources)
    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    if resources:
        fit = sum(min(int(n.get(k, 0.0) / v + 1e-9) for k, v in need.items()) for n in nodes)
    else:
        left = sum(n.get("CPU", 0.0) for n in nodes) - reserved_cpus
        fit = int(left / num_cpus + 1e-9) if num_cpus > 0 else 1
    return DecodePool(1, max_actors if max_actors > 0 else max(1, fit), num_cpus, dict(resources))


def inference_resources(actors: int, cpus_per_actor: float | None, gpus_per_actor: float | None,
                        read_cpus: float) -> tuple[float, float]:
    """Per-actor CPUs and GPUs of batch inference: by default the pool and one decode task (`read_cpus`) fit the
    cluster, GPUs shared evenly."""
    total = ray.cluster_resources()
    cpus, gpus = float(total.get("CPU", 1)), float(total.get("GPU", 0))
    if gpus_per_actor is None:
        gpus_per_actor = min(1.0, gpus / actors) if gpus else 0.0
    if cpus_per_actor is None:
        cpus_per_actor = max(0.25, min(1.0, (cpus - read_cpus) / actors))
    elif actors * cpus_per_actor + read_cpus > cpus:
        log.warning("%d actors x %.2f CPUs + %.2f for decoding exceed the cluster's %.0f CPUs: inference waits "
                    "for more nodes", actors, cpus_per_actor, read_cpus, cpus)
    return cpus_per_actor, gpus_per_actor
