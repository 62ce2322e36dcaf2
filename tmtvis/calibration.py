"""A 2-second measure of this machine's speed, printed before long CPU jobs so that a user knows what to expect."""
from __future__ import annotations

import time

import torch
import torch.nn.functional as F


def conv_gflops(threads: int = 1, seconds: float = 2.0) -> float:
    """Best GFLOP/s of a 64-channel 3x3 convolution's forward+backward on 3 frames at 16x16 (the tiny model's
    largest conv shape; convolutions are ~95% of a tiny training step's FLOPs), on `threads` threads."""
    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        g = torch.Generator().manual_seed(0)
        x = torch.randn(3, 64, 16, 16, generator=g, requires_grad=True)
        w = torch.randn(64, 64, 3, 3, generator=g, requires_grad=True)
        flops = 3 * 2 * x.shape[0] * 64 * 64 * 9 * 16 * 16  # forward, grad input, grad weight
        best, end = float("inf"), time.perf_counter() + seconds
        while time.perf_counter() < end:
            start = time.perf_counter()
            F.conv2d(x, w, padding=1).sum().backward()
            best = min(best, time.perf_counter() - start)
        return flops / best / 1e9
    finally:
        torch.set_num_threads(saved)
