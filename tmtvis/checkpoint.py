"""Checkpoints (no Ray): save, load weights_only, check cheaply, find the latest, resolve a name, build the model.

A checkpoint directory holds state.pt (model, optimiser, scheduler, RNG, iteration, the data progress),
config.yaml, taxonomy.json and meta.json, written last. A checkpoint named by an MLflow URI is downloaded first
(tmtvis/tracking/fetch.py): this module knows paths and object storage only.
"""
from __future__ import annotations

import dataclasses
import json
import shutil
import random
from dataclasses import dataclass
from pathlib import Path

import torch

from tmtvis import storage
from tmtvis.config import Config, load_config, save_config
from tmtvis.errors import TmtvisError
from tmtvis.io_utils import atomic_path, atomic_write_text
from tmtvis.models import tmtvis_model
from tmtvis.taxonomy import DatasetLabels, UnifiedTaxonomy

STATE_FILE = "state.pt"
META_FILE = "meta.json"
BEST_FILE = "best.json"  # in RUN_DIR/best: the iteration and val.mean_AP of the best validation
NEEDED = (STATE_FILE, "config.yaml", "taxonomy.json")


@dataclass
class LoadedCheckpoint:
    path: Path
    cfg: Config
    taxonomy: UnifiedTaxonomy
    model: torch.nn.Module | None = None
    iteration: int | None = None
    source: Path | str | None = None  # where it was loaded from (a URI for object storage); path is local

    def labels(self, dataset: str) -> DatasetLabels:
        """The label space of a dataset the checkpoint was trained with; a one-line error otherwise."""
        if dataset not in self.taxonomy.datasets:
            known = ", ".join(sorted(self.taxonomy.datasets)) or "none"
            raise TmtvisError(f"{self.path}: dataset '{dataset}' is not in this checkpoint's taxonomy "
                              f"(known: {known})")
        return self.taxonomy.datasets[dataset]


@dataclass
class DataProgress:
    """Which planned samples the checkpointed model has trained on: sorted disjoint [start, stop) ranges of
    sample indices, and how many samples it trained on (equal to their count when none was trained twice)."""

    consumed: list[list[int]] = dataclasses.field(default_factory=list)
    samples_trained: int = 0

    @property
    def position(self) -> int:
        """1 + the highest sample index consumed (0 before any)."""
        return int(self.consumed[-1][1]) if self.consumed else 0

    def to_dict(self) -> dict:
        return {"consumed": [[int(a), int(b)] for a, b in self.consumed], "samples_trained": int(self.samples_trained),
                "data_position": self.position}

    @classmethod
    def of(cls, saved: dict) -> "DataProgress":
        """From a state.pt or meta.json; one written before ranges were kept says only 'samples below N'."""
        if "consumed" in saved:
            return cls([list(map(int, r)) for r in saved["consumed"]], int(saved.get("samples_trained", 0)))
        n = int(saved.get("data_position", 0))
        return cls([[0, n]] if n else [], n)


def save_checkpoint(directory: Path, model: torch.nn.Module, optimizer, scheduler, iteration: int,
                    data: DataProgress, cfg: Config, taxonomy_path: Path) -> None:
    """Write a checkpoint; meta.json goes last and records state.pt's size, so a partly written or partly
    copied checkpoint is never taken for a whole one (see checkpoint_complete)."""
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
             "iteration": iteration, **data.to_dict(), "torch_rng": torch.get_rng_state(),
             "python_rng": random.getstate()}
    with atomic_path(directory / STATE_FILE) as tmp:
        torch.save(state, tmp)
    save_config(cfg, directory / "config.yaml")
    shutil.copy(taxonomy_path, directory / "taxonomy.json")
    atomic_write_text(directory / META_FILE, json.dumps({"iteration": iteration, **data.to_dict(),
                                                         "state_bytes": (directory / STATE_FILE).stat().st_size}))


def checkpoint_meta(directory: Path) -> dict:
    """A checkpoint directory's meta.json, or {} when there is none (a hand-made checkpoint) or it is unreadable."""
    try:
        meta = json.loads((Path(directory) / META_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}


def checkpoint_complete(directory: Path) -> dict | None:
    """A checkpoint directory's meta.json when the checkpoint is whole (state.pt of the recorded size), else None."""
    meta = checkpoint_meta(directory)
    try:
        size = (Path(directory) / STATE_FILE).stat().st_size
    except OSError:
        return None
    if not isinstance(meta.get("iteration"), int):
        return None
    return meta if meta.get("state_bytes", size) == size else None


def read_state(path: str | Path, mmap: bool = False) -> dict:
    """A state.pt as a dict with a model state, loaded weights_only (a checkpoint cannot run code).

    `mmap`: the tensors stay in the file, mapped, until touched (a cheap look at the keys and shapes).
    Anything else (truncated, corrupt, or some other program's file) is one line naming the file: never
    PyTorch's message, which advises loading with weights_only=False, the one thing not to do with it.
    """
    path = Path(path)
    if not path.is_file():
        raise TmtvisError(f"{path}: checkpoint file not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception:  # corrupt or foreign: weights_only refuses anything but tensors and plain data
        raise TmtvisError(f"not a tmtvis checkpoint (or corrupted): {path}") from None
    if not isinstance(state, dict) or not isinstance(state.get("model"), dict):
        raise TmtvisError(f"not a tmtvis checkpoint (or corrupted): {path}")
    return state


def check_state(ckpt: LoadedCheckpoint) -> None:
    """The checks of a full load without reading the weights or building the model for real: state.pt has the
    size meta.json records, is a torch zip of plain data with a model state and a bank (its tensors mapped, not
    read), and its keys and shapes fit the model in config.yaml (built on the meta device). One line otherwise."""
    path = ckpt.path / STATE_FILE
    recorded = checkpoint_meta(ckpt.path).get("state_bytes")
    if path.is_file() and recorded not in (None, path.stat().st_size):
        raise TmtvisError(f"not a tmtvis checkpoint (or corrupted): {path} ({path.stat().st_size} bytes, "
                          f"{META_FILE} records {recorded}: cut short or partly copied)")
    weights = model_weights(read_state(path, mmap=True), path)  # mmap: only a zip file of the new format loads
    with torch.device("meta"):  # no memory, no init: only the keys and shapes are compared
        model_from_weights(ckpt.cfg, weights, path, assign=True)


def model_weights(state: dict, path: Path) -> dict:
    """A loaded state's model weights (they hold the taxonomy bank the model is built over)."""
    if "bank" not in state["model"]:
        raise TmtvisError(f"{path}: no model state with a taxonomy bank")
    return state["model"]


def model_from_weights(cfg: Config, weights: dict, path: Path, assign: bool = False) -> torch.nn.Module:
    """The model of `cfg` holding `weights`, built on the current default device (`assign`: holding the weights'
    own tensors instead of copies); a one-line error if they do not fit."""
    # The trained weights replace the backbone's, so its init file need not exist where inference runs.
    model = tmtvis_model.build_model(dataclasses.replace(cfg.model, backbone_weights=None), weights["bank"])
    try:
        model.load_state_dict(weights, strict=True, assign=assign)
    except RuntimeError as e:  # its first line only names the class; the first problem follows
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        raise TmtvisError(f"{path}: weights do not fit the model in config.yaml "
                          f"({lines[1] if len(lines) > 1 else lines[0]})") from None
    return model


def load_state(directory: str | Path) -> dict:
    """A checkpoint directory's training state (see read_state)."""
    return read_state(Path(directory) / STATE_FILE)


def latest_checkpoint(root: str | Path) -> tuple[Path | str | None, dict]:
    """The checkpoint with the highest iteration under a Ray Train storage dir (local or a URI), and its meta.json."""
    best, meta = None, {}
    for rel in storage.files(root):
        parts = rel.split("/")
        if len(parts) == 3 and parts[1].startswith("checkpoint_") and parts[2] == META_FILE:
            where = storage.join(root, parts[0], parts[1])
            # a local checkpoint cut short while written or copied (a crash) is skipped
            data = (json.loads(storage.read_text(storage.join(root, rel))) if storage.is_uri(where)
                    else checkpoint_complete(Path(where)))
            if data is not None and (best is None or data["iteration"] > meta["iteration"]):
                best, meta = where, data
    return best, meta


def resolve_checkpoint(path: str | Path) -> Path | str:
    """A checkpoint dir or a training run dir (-> its latest checkpoint), local or an object-storage URI."""
    path = storage.resolve(path)
    if storage.is_empty_dir(path) if storage.is_uri(path) else not path.exists():
        raise TmtvisError(f"{path}: checkpoint not found")
    if not storage.is_file(storage.join(path, STATE_FILE)) and storage.is_dir(storage.join(path, "checkpoints")):
        latest, _ = latest_checkpoint(storage.join(path, "checkpoints"))
        if latest is None:
            raise TmtvisError(f"{path}: run directory holds no checkpoint yet")
        path = latest
    missing = [n for n in NEEDED if not storage.is_file(storage.join(path, n))]
    if missing:
        raise TmtvisError(f"{path}: not a tmtvis checkpoint (missing {', '.join(missing)})")
    return path


def load_checkpoint(path: str | Path, with_model: bool = True, device: str | torch.device = "cpu"
                    ) -> LoadedCheckpoint:
    """Config + taxonomy (cheap) and, with `with_model`, the model in eval mode with the trained weights."""
    source = resolve_checkpoint(path)
    path = storage.local_copy(source)  # a checkpoint on object storage: downloaded once per machine
    cfg = load_config(path / "config.yaml")
    taxonomy = UnifiedTaxonomy.load(path / "taxonomy.json")
    ckpt = LoadedCheckpoint(path, cfg, taxonomy, source=source)
    if not with_model:
        return ckpt
    state = read_state(path / STATE_FILE)
    model = model_from_weights(cfg, model_weights(state, path / STATE_FILE), path / STATE_FILE)
    ckpt.model = model.to(device).eval()
    ckpt.iteration = state.get("iteration")
    return ckpt
