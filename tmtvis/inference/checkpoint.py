"""Load a trained model, its resolved config and its taxonomy from a checkpoint directory (weights_only)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch

from tmtvis.config import Config, load_config
from tmtvis.errors import TmtvisError
from tmtvis.taxonomy import DatasetLabels, UnifiedTaxonomy

STATE_FILE = "state.pt"
NEEDED = (STATE_FILE, "config.yaml", "taxonomy.json")


@dataclass
class LoadedCheckpoint:
    path: Path
    cfg: Config
    taxonomy: UnifiedTaxonomy
    model: torch.nn.Module | None = None
    iteration: int | None = None

    def labels(self, dataset: str) -> DatasetLabels:
        """The label space of a dataset the checkpoint was trained with; a one-line error otherwise."""
        if dataset not in self.taxonomy.datasets:
            known = ", ".join(sorted(self.taxonomy.datasets)) or "none"
            raise TmtvisError(f"{self.path}: dataset '{dataset}' is not in this checkpoint's taxonomy "
                              f"(known: {known})")
        return self.taxonomy.datasets[dataset]


def read_state(path: str | Path) -> dict:
    """A state.pt as a dict with a model state, loaded weights_only (a checkpoint cannot run code).

    Anything else (truncated, corrupt, or some other program's file) is one line naming the file: never
    PyTorch's message, which advises loading with weights_only=False, the one thing not to do with it.
    """
    path = Path(path)
    if not path.is_file():
        raise TmtvisError(f"{path}: checkpoint file not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # corrupt or foreign: weights_only refuses anything but tensors and plain data
        raise TmtvisError(f"not a tmtvis checkpoint (or corrupted): {path}") from None
    if not isinstance(state, dict) or not isinstance(state.get("model"), dict):
        raise TmtvisError(f"not a tmtvis checkpoint (or corrupted): {path}")
    return state


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint dir, or a training run dir (-> its latest checkpoint)."""
    path = Path(path).expanduser().resolve()
    if not path.exists():
        raise TmtvisError(f"{path}: checkpoint not found")
    if not (path / STATE_FILE).is_file() and (path / "checkpoints").is_dir():
        from tmtvis.engine.trainer import latest_checkpoint

        latest, _ = latest_checkpoint(path / "checkpoints")
        if latest is None:
            raise TmtvisError(f"{path}: run directory holds no checkpoint yet")
        path = latest
    missing = [n for n in NEEDED if not (path / n).is_file()]
    if missing:
        raise TmtvisError(f"{path}: not a tmtvis checkpoint (missing {', '.join(missing)})")
    return path


def load_checkpoint(path: str | Path, with_model: bool = True, device: str | torch.device = "cpu") -> LoadedCheckpoint:
    """Config + taxonomy (cheap) and, with `with_model`, the model in eval mode with the trained weights."""
    from tmtvis.models.tmtvis_model import build_model

    path = resolve_checkpoint(path)
    cfg = load_config(path / "config.yaml")
    taxonomy = UnifiedTaxonomy.load(path / "taxonomy.json")
    ckpt = LoadedCheckpoint(path, cfg, taxonomy)
    if not with_model:
        return ckpt
    state = read_state(path / STATE_FILE)
    weights = state["model"]
    if "bank" not in weights:
        raise TmtvisError(f"{path / STATE_FILE}: no model state with a taxonomy bank")
    # The trained weights replace the backbone's, so its init file need not exist where inference runs.
    model_cfg = dataclasses.replace(cfg.model, backbone_weights=None)
    model = build_model(model_cfg, weights["bank"])
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError as e:
        raise TmtvisError(f"{path / STATE_FILE}: weights do not fit the model in config.yaml "
                          f"({str(e).splitlines()[0]})") from None
    ckpt.model = model.to(device).eval()
    ckpt.iteration = state.get("iteration")
    return ckpt
