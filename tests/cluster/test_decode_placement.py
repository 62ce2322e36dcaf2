"""Decoding where it is cheapest: on a two-node Ray (ray.cluster_utils.Cluster), the node with the custom resource
"decode" (too few CPUs for a Train worker) runs every decode actor, the other node both Train workers (Ray state API)."""
from __future__ import annotations

import pytest

from helpers import ray_nodes, tiny_config
from tmtvis.checkpoint import load_state
from tmtvis.engine.trainer import RunOptions, train
from tmtvis.pipeline.sampling import SampleSet

pytestmark = pytest.mark.integration


def test_decode_actors_on_the_decode_node_train_workers_on_the_other(synth_root, tmp_path):
    from ray.util.state import list_actors, list_tasks

    # head (node A): 1 CPU and 2 "decode"; node B: 3 CPUs. A worker asks for 1.5 CPUs: both fit only on B.
    with ray_nodes(3, node_args=[{"num_cpus": 1, "resources": {"decode": 2}}, {}]) as (c, address, _):
        decode_node = c.head_node.node_id
        cfg = tiny_config(synth_root, "schedule.iterations=4", "checkpoint.every=4", "scaling.cpus_per_worker=1.5",
                          "data.decode_resources={decode: 1}", "data.decode_cpus=0.5")
        res = train(cfg, synth_root / "prepared", tmp_path / "run", address=c.address,
                    options=RunOptions(track=False))
        assert res.metrics["iteration"] == 4
        state = load_state(res.checkpoint)
        assert state["samples_trained"] == 8 and len(SampleSet(state["consumed"])) == 8
        actors = list_actors(address=address, detail=True, limit=10_000)
        decoders = [a for a in actors if "DecodeClips" in a.class_name]
        workers = [a for a in actors if a.class_name == "RayTrainWorker"]
        assert decoders and {a.node_id for a in decoders} == {decode_node}
        assert len(workers) == 2 and {w.node_id for w in workers} == {c.list_all_nodes()[1].node_id}
        decode_tasks = [t for t in list_tasks(address=address, detail=True, limit=10_000)
                        if "DecodeClips" in (t.name or "") + (t.func_or_class_name or "")]
        ran = {t.node_id for t in decode_tasks if t.node_id is not None}  # None: never scheduled anywhere
        assert ran == {decode_node}
