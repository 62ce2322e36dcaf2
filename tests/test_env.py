import platform
import resource

import pytest
import torch

from tmtvis.env import LOCAL_DEFAULTS, keep_freed_memory


@pytest.mark.skipif(platform.system() != "Linux", reason="glibc's mallopt")
def test_keep_freed_memory_stops_refaulting_large_buffers():
    assert keep_freed_memory()
    faults = []
    for _ in range(30):  # as a training step does: the same large buffer, allocated and freed again and again
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        x = torch.ones(64 * 2 ** 20 // 4)  # 64 MiB: above glibc's largest mmap threshold
        del x
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    # The heap settles within some rounds (glibc splits aligned chunks; measured: 2-8); mapped afresh, each round would fault 16,384 pages in.
    assert sum(faults[-5:]) < 1000, faults


def test_openmp_threads_wait_passively_by_default():
    assert LOCAL_DEFAULTS["OMP_WAIT_POLICY"] == "PASSIVE"
