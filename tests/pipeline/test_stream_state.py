"""The stream's consumed state: what a resumed run streams, the ranks' tally of trained samples, the ledger."""
from __future__ import annotations

import logging

import numpy as np

from tmtvis.checkpoint import DataProgress
from tmtvis.pipeline.stream_state import SampleTally, StreamLedger, stream_ids, tell_ledger


def test_a_resumed_stream_fills_the_holes_then_goes_on():
    progress = DataProgress([[0, 5], [7, 10]], samples_trained=8)  # 5 and 6 were in flight at the checkpoint
    assert stream_ids(progress, 4).to_list() == [[5, 7], [10, 14]]
    assert stream_ids(DataProgress(), 3).to_list() == [[0, 3]]


def test_the_tally_merges_the_restored_progress_with_what_was_trained_since():
    tally = SampleTally(DataProgress([[0, 4]], samples_trained=4))
    tally.add(np.array([6, 4, 5]))
    tally.add(np.array([9]))
    assert tally.gather(world=1) == DataProgress([[0, 7], [9, 10]], samples_trained=8)
    tally.add(np.array([7]))  # after a gather only the new samples are this rank's
    assert (tally.mine.to_list(), tally.mine_trained) == ([[7, 8]], 1)
    assert tally.gather(world=1) == DataProgress([[0, 8], [9, 10]], samples_trained=9)


def test_a_restored_rank_tells_the_ledger_and_warns_of_samples_it_cannot_restore(ray_local, caplog):
    ledger = StreamLedger.remote()
    tell_ledger(ledger, None, None, rank=0)  # a fresh run: nothing to leave out
    assert ray_local.get(ledger.get.remote()) == []
    with caplog.at_level(logging.WARNING, logger="tmtvis.pipeline.stream_state"):
        # the driver planned from a checkpoint at 12, Ray Train restored the one at 8
        tell_ledger(ledger, DataProgress([[0, 8]], 8), DataProgress([[0, 12]], 12), rank=0)
    assert ray_local.get(ledger.get.remote()) == [[0, 8]]
    assert [r.getMessage() for r in caplog.records] == [
        "4 samples of a newer checkpoint than the restored one are not in the stream: they will not be trained on"]
