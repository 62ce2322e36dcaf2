"""What the training stream has consumed: the state behind exactly-once resume, and the moves that keep it.

The record itself is a checkpoint's `DataProgress` (tmtvis.checkpoint: sorted [start, stop) ranges of the
planned sample indices trained on). Around it:
- the driver plans the stream from the checkpoint it resumes: `stream_ids`, every planned sample not yet
  trained on;
- each rank tallies the samples it trains on, and at a checkpoint the ranks gather their tallies into one
  DataProgress (`SampleTally.gather`, a collective);
- Ray Train re-executes the `datasets=` stream from its start when it restarts the worker group (measured,
  Ray 2.60), so a restored rank tells the `StreamLedger` what its checkpoint has trained on (`tell_ledger`)
  and the decode actors (clip_stream.DecodeClips) leave those samples out undecoded.
"""
from __future__ import annotations

import logging

import numpy as np
import ray
import torch.distributed as dist

from tmtvis.checkpoint import DataProgress
from tmtvis.pipeline.sampling import SampleSet

log = logging.getLogger(__name__)


def stream_ids(progress: DataProgress, new_samples: int) -> SampleSet:
    """The sample indices a (resumed) run streams: those below the checkpoint's last that it has not trained on
    (the holes: what was in flight when it was taken), then `new_samples` new ones."""
    done = SampleSet(progress.consumed)
    return done.complement(done.stop + new_samples)


@ray.remote(num_cpus=0)
class StreamLedger:
    """The samples the restored checkpoint has trained on: decode actors leave them out of a re-executed stream."""

    def __init__(self) -> None:
        self.trained: list[list[int]] = []

    def restored(self, ranges: list[list[int]]) -> None:
        self.trained = ranges

    def get(self) -> list[list[int]]:
        return self.trained


class SampleTally:
    """The samples this rank has trained on since the last gather, and every rank's as of it."""

    def __init__(self, restored: DataProgress | None = None) -> None:
        restored = restored or DataProgress()
        self.consumed = SampleSet(restored.consumed)
        self.trained = restored.samples_trained
        self.mine, self.mine_trained = SampleSet(), 0

    def add(self, samples: np.ndarray) -> None:
        """The sample indices of one trained batch."""
        self.mine.add(samples)
        self.mine_trained += int(len(samples))

    def gather(self, world: int) -> DataProgress:
        """The samples all ranks have trained on, merged into one DataProgress (a collective: every rank calls it)."""
        mine = (self.mine.to_list(), self.mine_trained)
        gathered = [None] * world
        if world > 1:
            dist.all_gather_object(gathered, mine)
        else:
            gathered = [mine]
        self.consumed = self.consumed.union(*(SampleSet(r) for r, _ in gathered))
        self.trained += sum(n for _, n in gathered)
        self.mine, self.mine_trained = SampleSet(), 0
        return DataProgress(self.consumed.to_list(), self.trained)


def tell_ledger(ledger, restored: DataProgress | None, planned_from: DataProgress | None, rank: int) -> None:
    """Before a restored rank iterates: the decode actors leave out what its checkpoint has trained on. Warns when
    the driver planned from a newer checkpoint than Ray Train restored (those samples will not be trained on)."""
    if restored is None or ledger is None:
        return
    ray.get(ledger.restored.remote(restored.consumed))
    planned, done = SampleSet(planned_from.consumed if planned_from else []), SampleSet(restored.consumed)
    lost = len(planned.union(done)) - len(done)
    if lost and rank == 0:
        log.warning("%d samples of a newer checkpoint than the restored one are not in the stream: they will not "
                    "be trained on", lost)
