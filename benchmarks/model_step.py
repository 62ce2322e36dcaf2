"""Forward+backward time per clip, Mask2Former-VIS baseline vs TMT-VIS (tiny and r50), in one run.

    .venv/bin/python benchmarks/model_step.py [--repeats 5] [--threads 2] [--skip-r50]
    .venv/bin/python benchmarks/model_step.py --predict-memory   # peak RSS of windowed inference, 60 vs 300 frames
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

from tmtvis.inference import VideoPredictor
from tmtvis.losses import build_criterion
from tmtvis.models import LossConfig, ModelConfig, build_model, count_parameters


def clip_targets(t: int, h: int, w: int, c: int, n: int = 3) -> list[dict]:
    g = torch.Generator().manual_seed(0)
    masks = torch.zeros(n, t, h, w, dtype=torch.bool)
    for i in range(n):
        y, x = torch.randint(0, h // 2, (2,), generator=g).tolist()
        masks[i, :, y:y + h // 3, x:x + w // 3] = True
    return [{"labels": torch.randperm(c, generator=g)[:n], "masks": masks, "valid_classes": torch.arange(c // 2)}]


def step_times(cfgs: dict, loss_cfg: LossConfig, c: int, t: int, h: int, w: int, repeats: int) -> dict:
    """Median seconds per forward+loss+backward; the configs are interleaved so load changes hit all alike."""
    bank = F.normalize(torch.randn(c, 512, generator=torch.Generator().manual_seed(0)), dim=-1)
    models = {}
    for name, cfg in cfgs.items():
        torch.manual_seed(0)
        models[name] = build_model(cfg, bank)
    crit = build_criterion(c, loss_cfg)
    frames = torch.rand(1, t, 3, h, w, generator=torch.Generator().manual_seed(1))
    targets = clip_targets(t, h, w, c)
    times = {name: [] for name in cfgs}
    for r in range(repeats + 1):  # the first round warms up
        order = list(models.items())
        for name, model in (order if r % 2 else order[::-1]):
            torch.manual_seed(r)
            start = time.perf_counter()
            loss = crit(model(frames), targets)["loss"]
            loss.backward()
            elapsed = time.perf_counter() - start
            model.zero_grad(set_to_none=True)
            if r:
                times[name].append(elapsed)
    return {name: {"median_s": statistics.median(v), "params": count_parameters(models[name])}
            for name, v in times.items()}


def predict_memory_child(t: int, window: int, overlap: int) -> None:
    torch.set_num_threads(1)
    bank = F.normalize(torch.randn(40, 512, generator=torch.Generator().manual_seed(0)), dim=-1)
    model = build_model(ModelConfig.tiny(), bank)
    frames = (torch.rand(t, 3, 64, 64) * 255).to(torch.uint8)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    res = VideoPredictor(model, window=window, overlap=overlap).predict(frames, (360, 640), list(range(20)),
                                                                          {i: i + 1 for i in range(20)})
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"frames": t, "rss_before_kib": base, "peak_rss_kib": peak, "seconds": time.perf_counter() - start,
                      "tracks": len(res)}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--classes", type=int, default=120, help="size of the unified taxonomy")
    ap.add_argument("--skip-r50", action="store_true")
    ap.add_argument("--predict-memory", action="store_true")
    ap.add_argument("--keep-denormals", action="store_true",
                    help="do not flush denormals (on CPU they can slow a step down several-fold)")
    ap.add_argument("--child", nargs=3, type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(not args.keep_denormals)
    if args.child:
        return predict_memory_child(*args.child)
    if args.predict_memory:
        for t in (60, 300):
            out = subprocess.run([sys.executable, __file__, "--child", str(t), "20", "4"], capture_output=True,
                                 text=True, check=True).stdout
            r = json.loads(out)
            print(f"tiny, {t} frames 64x64 -> 360x640, window 20 overlap 4: "
                  f"peak RSS {r['peak_rss_kib'] / 1024:.0f} MiB "
                  f"(after model build {r['rss_before_kib'] / 1024:.0f} MiB), {r['seconds']:.1f}s")
        return
    runs = [("tiny", ModelConfig.tiny(), LossConfig.tiny(), 3, 64, 64)]
    if not args.skip_r50:
        runs.append(("r50", ModelConfig.r50(), LossConfig.r50(), 5, 128, 128))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, C={args.classes} categories, "
          f"median of {args.repeats} forward+loss+backward steps, batch 1, flush denormals {not args.keep_denormals}")
    for name, cfg, loss_cfg, t, h, w in runs:
        res = step_times({"baseline": ModelConfig.baseline(cfg), "tmt-vis": cfg}, loss_cfg, args.classes, t, h, w,
                         args.repeats)
        b, m = res["baseline"], res["tmt-vis"]
        print(f"{name:5s} clip {t}x{h}x{w}: baseline {b['median_s'] * 1000:8.1f} ms ({b['params']:,} params) | "
              f"TMT-VIS {m['median_s'] * 1000:8.1f} ms ({m['params']:,} params) | "
              f"ratio {m['median_s'] / b['median_s']:.3f}")


if __name__ == "__main__":
    main()
