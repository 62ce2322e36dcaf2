"""Batch inference throughput of `tmtvis infer`'s Ray Data actor pool with 1 and 2 actors: steady-state frames/s,
with the start-up (actor start + model load + first batch) reported apart.

Makes a synthetic ytvis-like dataset and a checkpoint of the tiny model (seeded, untrained: the cost is the
same), then, on one local Ray started with all cores, runs an untimed warm-up (so that neither pool size pays
the session's cold start), then for each repeat the same videos through 1 actor and through 2 (fresh output
dirs). Both pool sizes get the same CPUs per actor, so the ratio is the pool's scaling, not torch's threading.

Timing comes from the outputs: the time each video's Parquet file was written. Videos travel in blocks of k
(batch_inference.videos_per_block); a pool of N actors is warm once N blocks are out (each actor's first block
pays its start-up), so start_N = the time of the (N*k)-th output after the run began, and steady state spans
the (N*k)-th to the (N*k)-th-from-last output (both ends have a partly busy pool): its frames/s = the frames
written in that span / its length. The CPU seconds of every process of the local Ray (and of the driver) in
that span, per frame and by role, show where the time goes.
Usage: python benchmarks/inference.py [--videos 96] [--frames 16] [--size 128] [--repeats 1]
Ends with: RESULT actors2_vs_actors1=<steady ratio> start_1=<s> start_2=<s> (best of the repeats)
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import threading
import time
import warnings
from pathlib import Path

from tmtvis.env import apply_defaults  # noqa: E402

apply_defaults()

import torch  # noqa: E402

from tmtvis.checkpoint import META_FILE, DataProgress, save_checkpoint  # noqa: E402
from tmtvis.config import InferConfig, load_config, preset_path  # noqa: E402
from tmtvis.data.synthetic import generate  # noqa: E402
from tmtvis.optim import build_optimizer, build_scheduler  # noqa: E402
from tmtvis.models.tmtvis_model import build_model  # noqa: E402
from tmtvis.data.video_files import discover  # noqa: E402
from tmtvis.pipeline.batch_inference import prediction_file, run_inference, videos_per_block  # noqa: E402
from tmtvis.prepare import prepare  # noqa: E402
from tmtvis.ray_session import ray_session  # noqa: E402
from tmtvis.taxonomy_bank import load_bank  # noqa: E402

SMALL_CLIP = {"embed_dim": 16, "vision_cfg": {"image_size": 32, "layers": 1, "width": 16, "head_width": 8, "patch_size": 16},
              "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 16, "heads": 2, "layers": 1}}
OTHER_PRESET_VIDEOS = 4  # ovis and uvo are there for the tiny config's taxonomy only


def make_inputs(work: Path, videos: int, frames: int, size: int) -> tuple[Path, Path]:
    """(checkpoint dir, input JSON) under `work`; reused when a previous run left them there."""
    (work / "clip.json").write_text(json.dumps(SMALL_CLIP))
    for preset in ("ytvis", "ovis", "uvo"):  # the tiny config trains on all three: its taxonomy needs them
        if not (work / "data" / preset / "train.json").exists():
            generate(work / "data" / preset, preset, videos=videos if preset == "ytvis" else OTHER_PRESET_VIDEOS,
                     frames=frames, size=(size, size), seed=0, val_fraction=0.0 if preset == "ytvis" else 0.25)
    ckpt = work / "checkpoint"
    if not (ckpt / META_FILE).is_file():
        cfg = load_config(preset_path("tiny"), [
            f"data.root={work / 'data'}", f"output_dir={work / 'runs'}", "taxonomy.clip_model=bench-clip",
            f"taxonomy.clip_model_config={work / 'clip.json'}", f"data.clip.short_edge=[{size}]"])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            prepared = prepare(cfg, work / "prepared", show_progress=False).out_dir
        torch.manual_seed(0)
        model = build_model(cfg.model, torch.from_numpy(load_bank(prepared / "bank.parquet").embeddings))
        optimizer = build_optimizer(model, cfg.optim)
        ckpt.mkdir(exist_ok=True)
        save_checkpoint(ckpt, model, optimizer, build_scheduler(optimizer, cfg.schedule), 0, DataProgress(),
                        cfg, prepared / "taxonomy.json")
    return ckpt, work / "data/ytvis/train.json"


class CpuSampler:
    """CPU seconds of this process and all its descendants (the local Ray: GCS, raylet, workers), sampled every
    `every` s and grouped by role; a worker's CPU goes to the role its title names when sampled."""

    GROUPS = ("actors", "decode", "driver", "ray")

    def __init__(self, every: float = 0.25) -> None:
        self.every, self.samples, self._last = every, [], {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "CpuSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        own = 0.0  # this thread's CPU, taken out of the driver's
        while not self._stop.wait(self.every):
            deltas = self._deltas()
            deltas["driver"] -= time.thread_time() - own
            own = time.thread_time()
            self.samples.append((time.time(), deltas))

    def _deltas(self) -> dict[str, float]:
        tick, out = os.sysconf("SC_CLK_TCK"), dict.fromkeys(self.GROUPS, 0.0)
        for pid, (title, cpu) in _descendants(os.getpid()).items():
            out[self._group(pid, title)] += (cpu - self._last.get(pid, 0)) / tick  # a new process: all its CPU
            self._last[pid] = cpu
        return out

    @staticmethod
    def _group(pid: int, title: str) -> str:
        if pid == os.getpid():
            return "driver"
        if title.startswith("ray::MapWorker"):
            return "actors"
        return "decode" if title.startswith(("ray::Map(", "ray::IDLE")) else "ray"

    def between(self, t0: float, t1: float) -> dict[str, float]:
        """CPU seconds per group in (t0, t1]."""
        total = dict.fromkeys(self.GROUPS, 0.0)
        for t, d in self.samples:
            if t0 < t <= t1:
                for k, v in d.items():
                    total[k] += v
        return total


def _descendants(root: int) -> dict[int, tuple[str, int]]:
    """pid -> (title, utime + stime in ticks) for `root` and every process below it."""
    stats, children = {}, {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                fields = Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()
                title = Path(entry.path, "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
            except OSError:
                continue
            stats[int(entry.name)] = (title, int(fields[11]) + int(fields[12]))
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    out, todo = {}, [root]
    while todo:
        pid = todo.pop()
        if pid in stats:
            out[pid] = stats[pid]
        todo += children.get(pid, [])
    return out


def timed_run(ckpt: Path, input_json: Path, out: Path, actors: int, cpus_per_actor: float,
              cpu: CpuSampler) -> dict:
    """One `run_inference` into a fresh `out`: start-up, steady-state frames/s and the whole run's figures."""
    shutil.rmtree(out, ignore_errors=True)
    lengths = {v["id"]: v["length"] for v in json.loads(input_json.read_text())["videos"]}
    t0 = time.time()
    s = run_inference(InferConfig(str(ckpt), str(input_json), "ytvis_synth", str(out), actors=actors,
                                  cpus_per_actor=cpus_per_actor, progress=False))
    wall = time.time() - t0
    done = sorted((prediction_file(out, v).stat().st_mtime_ns / 1e9, n) for v, n in lengths.items())
    warm = actors * videos_per_block(discover(input_json), actors)  # outputs until each actor's first block is out
    if len(done) < 2 * warm + 1:
        raise SystemExit(f"{len(done)} videos are too few for a steady state with {actors} actors: use more")
    first, last = warm - 1, len(done) - warm  # indexes of the steady span's ends
    span = done[last][0] - done[first][0]
    steady_frames = sum(n for _, n in done[first + 1:last + 1])
    used = cpu.between(done[first][0], done[last][0])
    return {"start": done[first][0] - t0, "steady_fps": steady_frames / span, "steady_s": span,
            "steady_frames": steady_frames, "frames": s.frames, "wall": wall,
            "cpu_ms_per_frame": {k: 1000 * v / steady_frames for k, v in used.items()}}


def warm_up(ckpt: Path, input_json: Path, out: Path, cpus_per_actor: float) -> None:
    """A few videos through 2 actors, untimed: the session's cold start (worker processes, imports) is paid here."""
    data = json.loads(input_json.read_text())
    few = input_json.with_name("warmup.json")  # beside the input: the same image root
    few.write_text(json.dumps({**data, "videos": data["videos"][:4], "annotations": []}))
    shutil.rmtree(out, ignore_errors=True)
    run_inference(InferConfig(str(ckpt), str(few), "ytvis_synth", str(out), actors=2, cpus_per_actor=cpus_per_actor,
                              progress=False))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--videos", type=int, default=96)
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=1, help="runs per pool size; the best is reported")
    ap.add_argument("--workdir", type=Path, default=None, help="keep the data and checkpoint here (reused)")
    args = ap.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="tmtvis-bench-infer-"))
    work.mkdir(parents=True, exist_ok=True)
    ckpt, input_json = make_inputs(work, args.videos, args.frames, args.size)
    cpus = os.cpu_count() or 2
    per_actor = min(1.0, (cpus - 0.25) / 2)  # what the default gives each of 2 actors; 1 actor gets the same
    print(f"{args.videos} videos x {args.frames} frames at {args.size}x{args.size}, tiny model, local Ray with "
          f"{cpus} CPUs, {per_actor:.3g} CPUs ({max(1, int(per_actor))} torch thread) per actor, "
          f"torch {torch.__version__}, load average {os.getloadavg()[0]:.1f}")
    runs: dict[int, list[dict]] = {1: [], 2: []}
    with ray_session(num_cpus=cpus), CpuSampler() as cpu:
        warm_up(ckpt, input_json, work / "out-warmup", per_actor)
        for r in range(args.repeats):
            for actors in (1, 2):
                m = timed_run(ckpt, input_json, work / f"out-{actors}-{r}", actors, per_actor, cpu)
                runs[actors].append(m)
                print(f"  {actors} actor(s), run {r + 1}: start-up {m['start']:.1f} s, steady "
                      f"{m['steady_fps']:.2f} frames/s ({m['steady_frames']} frames in {m['steady_s']:.1f} s); "
                      f"whole run {m['frames']} frames in {m['wall']:.1f} s = {m['frames'] / m['wall']:.2f} "
                      f"frames/s; load average {os.getloadavg()[0]:.1f}")
                print("      steady-state CPU ms per frame: " + ", ".join(
                    f"{k} {v:.1f}" for k, v in m["cpu_ms_per_frame"].items()))
    fps = {a: max(m["steady_fps"] for m in ms) for a, ms in runs.items()}
    start = {a: min(m["start"] for m in ms) for a, ms in runs.items()}
    whole = {a: max(m["frames"] / m["wall"] for m in ms) for a, ms in runs.items()}
    print(f"steady frames/s: 1 actor {fps[1]:.2f}, 2 actors {fps[2]:.2f}; whole-run ratio "
          f"{whole[2] / whole[1]:.2f} (start-up included)")
    print(f"RESULT actors2_vs_actors1={fps[2] / fps[1]:.2f} start_1={start[1]:.1f} start_2={start[2]:.1f}")


if __name__ == "__main__":
    main()
