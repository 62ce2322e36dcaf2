"""`prepare`: validate the datasets, build the unified taxonomy, the CLIP bank and the Parquet manifests.

Outputs in OUT: taxonomy.json, bank.parquet, manifests/<dataset>_<split>.parquet, prepare_state.json.
Each output is rebuilt only when what it depends on changed (fingerprints in prepare_state.json).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from tmtvis.config import Config, DatasetConfig
from tmtvis.data.frames import check_video_frames
from tmtvis.data.manifest import manifest_path, video_rows, write_manifest
from tmtvis.data.readers import load_source
from tmtvis.data.ytvis_format import VisDataset, resolve_frame
from tmtvis.errors import DataError
from tmtvis.io_utils import atomic_write_text
from tmtvis.taxonomy import UnifiedTaxonomy
from tmtvis.taxonomy_bank import build_bank, file_sha256, load_bank, save_bank

log = logging.getLogger(__name__)
MANIFEST_VERSION = 1


@dataclass
class PrepareResult:
    out_dir: Path
    taxonomy: UnifiedTaxonomy
    manifests: dict[str, Path] = field(default_factory=dict)   # "<dataset>_<split>" -> path
    rows: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, list[str]] = field(default_factory=dict)
    reused: list[str] = field(default_factory=list)


def manifest_key(ds: DatasetConfig) -> str:
    return f"{ds.name}_{ds.split}"


def _digest(obj: object) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def _check_frames_exist(dataset: VisDataset, image_root: Path, decode: bool, skip_bad: bool) -> list[str]:
    """Drop (with skip_bad) or raise on videos whose frames are missing, or broken when `decode`."""
    bad = []
    for vid in list(dataset.videos):
        try:
            if decode:
                check_video_frames(dataset, vid, image_root)
            else:
                for f, name in enumerate(dataset.videos[vid].file_names):
                    if not resolve_frame(image_root, name).is_file():
                        raise DataError(image_root / name, f"video {vid} frame {f}", "frame file not found")
        except DataError as e:
            if not skip_bad:
                raise
            bad.append(str(e))
            del dataset.videos[vid]
    if bad:
        dataset.tracks = [t for t in dataset.tracks if t.video_id in dataset.videos]
    return bad


def prepare(cfg: Config, out_dir: str | Path, check_frames: bool = False, show_progress: bool = True,
            force: bool = False) -> PrepareResult:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state_path = out / "prepare_state.json"
    state = json.loads(state_path.read_text()) if state_path.is_file() and not force else {}
    if not cfg.data.datasets:
        raise DataError("config", "data.datasets", "no datasets configured")

    # Validate every split first: a bad file fails before anything is written.
    loaded: list[tuple[DatasetConfig, VisDataset, Path]] = []
    for ds in cfg.data.datasets:
        ann = cfg.data.resolve(ds.annotations)
        root = cfg.data.resolve(ds.images)
        data = load_source(ds.format, ann, skip_bad_videos=cfg.data.skip_bad_videos)
        skipped = list(data.skipped) + _check_frames_exist(data, root, check_frames, cfg.data.skip_bad_videos)
        data.skipped = skipped
        if skipped:
            log.warning("%s: skipped %d bad video(s); first: %s", ann, len(skipped), skipped[0])
        loaded.append((ds, data, root))

    # Train splits first so unified ids do not depend on which validation files are listed.
    order = sorted(loaded, key=lambda x: x[0].split != "train")
    taxonomy = UnifiedTaxonomy.build([(ds.name, ds.format, data.categories) for ds, data, _ in order])
    result = PrepareResult(out, taxonomy)
    taxonomy.save(out / "taxonomy.json")

    bank_cfg = cfg.taxonomy
    weights = file_sha256(bank_cfg.clip_weights) if bank_cfg.clip_weights else None
    bank_fp = _digest({"names": taxonomy.names, "cfg": dataclasses.asdict(bank_cfg), "weights": weights})
    bank_path = out / "bank.parquet"
    if state.get("bank") == bank_fp and bank_path.is_file() and load_bank(bank_path).names == taxonomy.names:
        result.reused.append("bank")
    else:
        save_bank(bank_path, build_bank(taxonomy, bank_cfg, show_progress=show_progress))
    new_state = {"bank": bank_fp, "manifests": {}}

    for ds, data, root in loaded:
        key = manifest_key(ds)
        path = manifest_path(out, ds.name, ds.split)
        labels = taxonomy.datasets[ds.name]
        fp = _digest({"v": MANIFEST_VERSION, "ann": file_sha256(data.path), "root": str(root.resolve()),
                      "to_unified": labels.to_unified, "skipped": data.skipped, "split": ds.split})
        new_state["manifests"][key] = fp
        result.manifests[key] = path
        result.rows[key] = len(data.videos)
        result.skipped[key] = data.skipped
        if state.get("manifests", {}).get(key) == fp and path.is_file():
            result.reused.append(key)
            continue
        rows, by_video = [], data.tracks_by_video()
        for vid in tqdm(list(data.videos), desc=f"manifest {key}", disable=None if show_progress else True):
            rows.extend(video_rows(data, labels, ds.split, root, [vid], by_video))
        write_manifest(path, rows)
    atomic_write_text(state_path, json.dumps(new_state, indent=1))
    return result


