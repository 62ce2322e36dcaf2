"""Forward+backward time of tmtvis's Mask2Former (baseline: TCM/TIM off, T = 1) vs transformers' Mask2Former port.

Same sizes (tiny and r50 presets), same weights (converted), same images, in one run, interleaved. The step is
forward + backward of a scalar over every layer's class and mask logits (no loss: the criteria differ, and the
loss is not what is compared). Ends with RESULT step_vs_transformers=<geometric mean of the per-size ratios of
process CPU time per step> (< 1: tmtvis is faster).

    .venv/bin/python benchmarks/peer_mask2former.py [--repeats 5] [--threads 2] [--r50-size 256x256] [--device cpu]
"""
from __future__ import annotations

import argparse
import math
import statistics
import time
from pathlib import Path

import torch

from tmtvis.config import load_config
from tmtvis.models import ModelConfig, build_model
from tmtvis.models.convert import convert_state, peer_config

CONFIGS = Path(__file__).resolve().parents[1] / "tmtvis" / "configs"
MEAN = torch.tensor([123.675, 116.280, 103.530]).view(1, 3, 1, 1)
STD = torch.tensor([58.395, 57.120, 57.375]).view(1, 3, 1, 1)


def pair(name: str, classes: int, device: torch.device):
    import transformers

    cfg = ModelConfig.baseline(load_config(CONFIGS / f"{name}.yaml").model)
    torch.manual_seed(0)
    hf = transformers.Mask2FormerForUniversalSegmentation(peer_config(cfg, classes))
    ours = build_model(cfg, torch.nn.functional.normalize(torch.randn(classes, 512), dim=-1))
    missing, unexpected = ours.load_state_dict(convert_state(hf.state_dict(), "transformers").state, strict=False)
    assert missing == ["bank"] and not unexpected, (missing, unexpected)
    # eval: BatchNorm uses its statistics in both (tmtvis's is frozen); gradients still flow
    return hf.to(device).eval(), ours.to(device).eval()


def step_ours(model, images: torch.Tensor) -> None:
    out = model(images[:, None])
    preds = out["aux_outputs"] + [out]
    sum(p["pred_logits"].sum() + p["pred_masks"].mean() for p in preds).backward()


def step_peer(model, pixels: torch.Tensor) -> None:
    out = model(pixel_values=pixels, output_auxiliary_logits=True)
    preds = [(a["class_queries_logits"], a["masks_queries_logits"]) for a in out.auxiliary_logits]
    preds.append((out.class_queries_logits, out.masks_queries_logits))
    sum(c.sum() + m.mean() for c, m in preds).backward()


def bench(name: str, size: tuple[int, int], repeats: int, device: torch.device, classes: int = 80) -> dict:
    hf, ours = pair(name, classes, device)
    g = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (1, 3, *size), generator=g, dtype=torch.uint8).to(device)
    pixels = (images.float().cpu() - MEAN) / STD
    pixels = pixels.to(device)
    runs = {"tmtvis": (lambda: step_ours(ours, images), ours), "transformers": (lambda: step_peer(hf, pixels), hf)}
    wall = {k: [] for k in runs}
    cpu = {k: [] for k in runs}
    for r in range(repeats + 1):  # round 0 warms up; the order alternates so load changes hit both alike
        for k, (fn, model) in (list(runs.items()) if r % 2 else list(runs.items())[::-1]):
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize()
            t1, c1 = time.perf_counter(), time.process_time()
            model.zero_grad(set_to_none=True)
            if r:
                wall[k].append(t1 - t0)
                cpu[k].append(c1 - c0)
    res = {k: {"median_s": statistics.median(wall[k]), "min_s": min(wall[k]), "cpu_s": statistics.median(cpu[k])}
           for k in runs}
    key = "median_s" if device.type == "cuda" else "cpu_s"
    res["ratio"] = res["tmtvis"][key] / res["transformers"][key]
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tiny-size", default="64x64", help="HxW (tiny preset's crop)")
    ap.add_argument("--r50-size", default="256x256", help="HxW (the r50 crop is 384x640: slow on CPU)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--skip-r50", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sizes = {"tiny": args.tiny_size, "r50": args.r50_size}
    ratios = []
    for name, size in sizes.items():
        if name == "r50" and args.skip_r50:
            continue
        h, w = (int(v) for v in size.split("x"))
        res = bench(name, (h, w), args.repeats, device)
        ratios.append(res["ratio"])
        print(f"{name} {h}x{w} on {device}: tmtvis median {res['tmtvis']['median_s'] * 1e3:.1f} ms "
              f"(cpu {res['tmtvis']['cpu_s'] * 1e3:.1f}), transformers median {res['transformers']['median_s'] * 1e3:.1f} ms "
              f"(cpu {res['transformers']['cpu_s'] * 1e3:.1f}); ratio {res['ratio']:.3f}", flush=True)
    print(f"RESULT step_vs_transformers={math.exp(sum(map(math.log, ratios)) / len(ratios)):.3f}")


if __name__ == "__main__":
    main()
