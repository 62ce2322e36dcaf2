"""Forward+backward time per clip, Mask2Former-VIS baseline vs TMT-VIS (tiny and r50), in one run.

    .venv/bin/python benchmarks/model_step.py [--repeats 9] [--threads 2] [--skip-r50]
    .venv/bin/python benchmarks/model_step.py --predict-memory   # peak RSS of windowed inference, 60 vs 300 frames
    .venv/bin/python benchmarks/model_step.py --against /work/main [--threads 2] [--repeats 9]

--against DIR: the TMT-VIS training step of this checkout vs the tmtvis package of another checkout (e.g. main),
tiny and r50, in one run: each code runs in its own child process (same interpreter and torch, only the package
differs), steps alternate A B B A ..., and the speed-up and the achieved GFLOP/s are printed from the minima.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import replace

ORIGINAL_ENV = dict(os.environ)  # what --against's children start from: each applies its own code's defaults
if "--serve" in sys.argv:  # a child of --against: the tmtvis package of the checkout it names, not this one's
    sys.meta_path = [f for f in sys.meta_path if "__editable__" not in str(f)]
    sys.path.insert(0, os.path.abspath(sys.argv[sys.argv.index("--serve") + 1]))

from tmtvis.env import apply_defaults  # noqa: E402

apply_defaults()  # before torch: OpenMP reads its wait policy when it loads

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

import tmtvis.env  # noqa: E402
from tmtvis.config import load_config, preset_path  # noqa: E402
from tmtvis.inference import VideoPredictor  # noqa: E402
from tmtvis.losses import build_criterion  # noqa: E402
try:  # --against may name a checkout from before LossConfig moved to tmtvis.losses
    from tmtvis.losses import LossConfig  # noqa: E402
except ImportError:
    from tmtvis.models import LossConfig  # noqa: E402
from tmtvis.models import ModelConfig, build_model, count_parameters  # noqa: E402


def clip_targets(t: int, h: int, w: int, c: int, n: int = 3) -> list[dict]:
    g = torch.Generator().manual_seed(0)
    masks = torch.zeros(n, t, h, w, dtype=torch.bool)
    for i in range(n):
        y, x = torch.randint(0, h // 2, (2,), generator=g).tolist()
        masks[i, :, y:y + h // 3, x:x + w // 3] = True
    return [{"labels": torch.randperm(c, generator=g)[:n], "masks": masks, "valid_classes": torch.arange(c) < c // 2}]


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


def serve(code: str, preset: str, threads: int, classes: int) -> None:
    """Child of --against: build the seeded model of `preset` from the tmtvis package under `code`, then answer
    'step' (one forward+loss+backward, as a training worker runs it) and 'flops' lines on stdin with JSON."""
    # What that code's training workers do before they build the model.
    tuned = getattr(tmtvis.env, "keep_freed_memory", lambda: False)()  # main's has none: False
    torch.set_num_threads(threads)
    cfg = load_config(preset_path(preset))
    t, h, w = (3, 64, 64) if preset == "tiny" else (5, 128, 128)
    bank = F.normalize(torch.randn(classes, 512, generator=torch.Generator().manual_seed(0)), dim=-1)
    torch.manual_seed(0)
    model, crit = build_model(cfg.model, bank), build_criterion(classes, cfg.loss)
    frames = torch.rand(1, t, 3, h, w, generator=torch.Generator().manual_seed(1))
    targets = clip_targets(t, h, w, classes)
    print(json.dumps({"package": os.path.dirname(tmtvis.env.__file__), "keeps_freed_memory": tuned, "clip": [t, h, w]}),
          flush=True)
    for r, line in enumerate(sys.stdin):
        if line.strip() == "flops":
            with FlopCounterMode(display=False) as counter:
                crit(model(frames), targets)["loss"].backward()
            model.zero_grad(set_to_none=True)
            print(json.dumps({"flops": counter.get_total_flops()}), flush=True)
            continue
        torch.manual_seed(r)
        start, start_cpu = time.perf_counter(), time.process_time()
        crit(model(frames), targets)["loss"].backward()
        model.zero_grad(set_to_none=True)
        print(json.dumps({"s": time.perf_counter() - start, "cpu_s": time.process_time() - start_cpu}), flush=True)


def against(other: str, presets: list[str], threads: int, repeats: int, classes: int) -> None:
    """The speed-up of this checkout's training step over `other`'s, interleaved in one run."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    codes = {"other": os.path.abspath(other), "this": here}
    print(f"torch {torch.__version__}, {threads} threads, C={classes} categories, batch 1, {repeats} steps each "
          f"after one warm-up, alternating order; this = {here}, other = {codes['other']}")
    for preset in presets:
        procs, info = {}, {}
        for name, code in codes.items():
            procs[name] = subprocess.Popen([sys.executable, __file__, "--serve", code, preset, str(threads), str(classes)],
                                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=ORIGINAL_ENV)
            info[name] = json.loads(procs[name].stdout.readline())

        def ask(name: str, what: str) -> dict:
            procs[name].stdin.write(what + "\n")
            procs[name].stdin.flush()
            return json.loads(procs[name].stdout.readline())

        flops = {name: ask(name, "flops")["flops"] for name in procs}
        times: dict[str, list] = {name: [] for name in procs}
        for r in range(repeats + 1):
            for name in (list(procs) if r % 2 else list(procs)[::-1]):
                res = ask(name, "step")
                if r:
                    times[name].append(res)
        for p in procs.values():
            p.stdin.close()
            p.wait()
        t, h, w = info["this"]["clip"]
        mins = {n: min(x["s"] for x in v) for n, v in times.items()}
        meds = {n: statistics.median(x["s"] for x in v) for n, v in times.items()}
        cpus = {n: statistics.median(x["cpu_s"] for x in v) for n, v in times.items()}
        for name in procs:
            print(f"{preset} {t}x{h}x{w} {name:5s} ({info[name]['package']}): step min {mins[name] * 1e3:7.1f} ms, median {meds[name] * 1e3:7.1f} "
                  f"ms, CPU median {cpus[name] * 1e3:7.1f} ms; {flops[name] / 1e9:.2f} GFLOP -> "
                  f"{flops[name] / 1e9 / mins[name]:.1f} GFLOP/s (keeps freed memory: "
                  f"{info[name]['keeps_freed_memory']})")
        print(f"RESULT {preset}: speed-up {mins['other'] / mins['this']:.2f}x (min), "
              f"{meds['other'] / meds['this']:.2f}x (median); {flops['this'] / 1e9 / mins['this']:.1f} GFLOP/s "
              f"(other {flops['other'] / 1e9 / mins['other']:.1f})")


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
    ap.add_argument("--against", metavar="DIR", help="another checkout (e.g. main): speed-up of this one's step")
    ap.add_argument("--serve", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        code, preset, threads, classes = args.serve
        return serve(code, preset, int(threads), int(classes))
    tmtvis.env.keep_freed_memory()  # as the training workers do
    if args.against:
        return against(args.against, ["tiny"] + ([] if args.skip_r50 else ["r50"]), args.threads, args.repeats,
                       args.classes)
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
