"""Ray Train's placement group cleaners on a cluster that outlives the driver.

Train V2 starts one detached `PlacementGroupCleaner` actor per run; the run's controller then sends it
`start_monitoring` without waiting for it to come up. A cleaner that is monitoring ends itself about a second
after the controller dies. One still being created when the driver goes (its worker process starting: seconds on
a loaded node) never receives the call, because the controller that queued it is gone, and then stays ALIVE until
the cluster stops: measured on a joined 2-node cluster, interrupted 1.3 s after `train --address` started to
wait for resources, the cleaner was PENDING_CREATION, came up 3.5 s later, had no task, and was still ALIVE 200 s
on. Interrupted on the same cluster once it had started monitoring, it was DEAD 1.2 s after the driver.
So before an interrupted driver leaves a joined cluster, it lets every Train run's cleaner start monitoring.
"""
from __future__ import annotations

import time

CLEANER = "PlacementGroupCleaner"


def _pending(gcs: str, job_id: str) -> int:
    """Train controllers of this job still alive, minus their cleaners that are monitoring (or already gone)."""
    from ray.util.state import list_actors, list_tasks

    actors = list_actors(address=gcs, filters=[("job_id", "=", job_id)], limit=10_000,
                         raise_on_missing_output=False)
    controllers = sum(a.class_name == "TrainController" and a.state == "ALIVE" for a in actors)
    cleaners = {a.actor_id: a.state for a in actors if a.class_name == CLEANER}
    started = {t.actor_id for t in list_tasks(address=gcs, filters=[("job_id", "=", job_id),
                                                      ("func_or_class_name", "=", f"{CLEANER}.start_monitoring")],
                                              limit=10_000, raise_on_missing_output=False)
               if t.state in ("RUNNING", "FINISHED")}
    ready = sum(state == "DEAD" or actor in started for actor, state in cleaners.items())
    return max(controllers, len(cleaners)) - ready


def let_cleaners_start(deadline: float, poll_s: float = 0.2) -> bool:
    """Wait (until `deadline`, time.time() based) until every Train run of this driver's job has a monitoring
    placement group cleaner; False if some have not by then. The State API is the only public view of them."""
    import ray

    if not ray.is_initialized():
        return True
    context = ray.get_runtime_context()  # the State API would pick the newest Ray instance on this machine
    while _pending(context.gcs_address, context.get_job_id()) > 0:
        if time.time() + poll_s > deadline:
            return False
        time.sleep(poll_s)
    return True
