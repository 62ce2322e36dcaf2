"""Forward+backward time per clip, Mask2Former-VIS baseline vs TMT-VIS (tiny and r50), in one run.

    .venv/bin/python benchmarks/model_step.py [--repeats 9] [--threads 2] [--skip-r50]
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
from dataclasses import replace

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from tmtvis.config import load_config, preset_path
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
    """Seconds per forward+loss+backward (wall and process CPU time); the configs are interleaved, alternating
    their order, so load changes hit all alike. On shared cores CPU time and the minimum are the steadier figures."""
    bank = F.normalize(torch.randn(c, 512, generator=torch.Generator().manual_seed(0)), dim=-1)
    models = {}
    for name, cfg in cfgs.items():
        torch.manual_seed(0)
        models[name] = build_model(cfg, bank)
    crit = build_criterion(c, loss_cfg)
    frames = torch.rand(1, t, 3, h, w, generator=torch.Generator().manual_seed(1))
    targets = clip_targets(t, h, w, c)
    flops = {}
    for name, model in models.items():  # deterministic cost: matmul/conv FLOPs of one step (not grid_sample)
        with FlopCounterMode(display=False) as counter:
            crit(model(frames), targets)["loss"].backward()
        flops[name] = counter.get_total_flops()
        model.zero_grad(set_to_none=True)
    times = {name: [] for name in cfgs}
    cpu = {name: [] for name in cfgs}
    for r in range(repeats + 1 if repeats else 0):  # the first round warms up; --repeats 0: FLOPs only
        order = list(models.items())
        for name, model in (order if r % 2 else order[::-1]):
            torch.manual_seed(r)
            start, start_cpu = time.perf_counter(), time.process_time()
            loss = crit(model(frames), targets)["loss"]
            loss.backward()
            elapsed, elapsed_cpu = time.perf_counter() - start, time.process_time() - start_cpu
            model.zero_grad(set_to_none=True)
            if r:
                times[name].append(elapsed)
                cpu[name].append(elapsed_cpu)
    nan = [float("nan")]
    return {name: {"median_s": statistics.median(v or nan), "min_s": min(v or nan),
                   "cpu_s": statistics.median(cpu[name] or nan),
                   "gflops": flops[name] / 1e9,
                   "params": count_parameters(models[name])} for name, v in times.items()}


def predict_memory_child(t: int, window: int, overlap: int) -> None:
    torch.set_num_threads(1)
    bank = F.normalize(torch.randn(40, 512, generator=torch.Generator().manual_seed(0)), dim=-1)
    model = build_model(ModelConfig(), bank)
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
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--classes", type=int, default=120, help="size of the unified taxonomy")
    ap.add_argument("--skip-r50", action="store_true")
    ap.add_argument("--evidence", default=None, help="model.tcm_evidence of the TMT-VIS model (default: the preset's)")
    ap.add_argument("--predict-memory", action="store_true")
    ap.add_argument("--child", nargs=3, type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
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
    runs = [("tiny", ModelConfig(), LossConfig(), 3, 64, 64)]
    if not args.skip_r50:
        r50 = load_config(preset_path("r50"))
        runs.append(("r50", r50.model, r50.loss, 5, 128, 128))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, C={args.classes} categories, "
          f"{args.repeats} forward+loss+backward steps each, batch 1")
    print("times in ms: wall min / wall median / process CPU median; the min is the figure least disturbed by "
          "other processes on shared cores. GFLOP: forward+backward matmul/conv FLOPs, load-independent")
    for name, cfg, loss_cfg, t, h, w in runs:
        if args.evidence:
            cfg = replace(cfg, tcm_evidence=args.evidence)
        res = step_times({"baseline": ModelConfig.baseline(cfg), "tmt-vis": cfg}, loss_cfg, args.classes, t, h, w,
                         args.repeats)
        b, m = res["baseline"], res["tmt-vis"]
        def fmt(r: dict) -> str:
            return (f"{r['min_s'] * 1e3:.1f} / {r['median_s'] * 1e3:.1f} / {r['cpu_s'] * 1e3:.1f} ms, "
                    f"{r['gflops']:.2f} GFLOP")
        print(f"{name} (tcm_evidence {cfg.tcm_evidence}) clip {t}x{h}x{w}: baseline {fmt(b)} ({b['params']:,} params) | TMT-VIS {fmt(m)} "
              f"({m['params']:,} params) | TMT-VIS/baseline: {m['min_s'] / b['min_s']:.3f} (min), "
              f"{m['median_s'] / b['median_s']:.3f} (median), {m['cpu_s'] / b['cpu_s']:.3f} (CPU), "
              f"{m['gflops'] / b['gflops']:.4f} (FLOPs)")


if __name__ == "__main__":
    main()
