"""Configuration: plain dataclasses loaded from YAML, with `--set key=value` overrides."""
from __future__ import annotations

import copy
import dataclasses
import logging
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from tmtvis.data.clips import ClipConfig
from tmtvis.errors import ConfigError
from tmtvis.io_utils import atomic_write_text, read_yaml_mapping
from tmtvis.losses.config import LossConfig
from tmtvis.models.config import ModelConfig
from tmtvis.taxonomy_bank import BankConfig

log = logging.getLogger(__name__)
FORMATS = ("ytvis", "ovis", "uvo", "coco")
SPLITS = ("train", "valid")


@dataclass
class DatasetConfig:
    """One split of one dataset; datasets with the same `name` share a label space."""

    name: str
    format: str                  # ytvis (2019/2021) | ovis | uvo (dense with labels) | coco (images as pseudo-videos)
    annotations: str             # YouTube-VIS JSON (COCO instances JSON for coco); relative to data.root
    images: str                  # image root holding <file_name> frames
    split: str = "train"         # train | valid
    weight: float = 1.0          # mixing ratio in joint training

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ConfigError(f"dataset '{self.name}': format must be one of {FORMATS}, got '{self.format}'")
        if self.split not in SPLITS:
            raise ConfigError(f"dataset '{self.name}': split must be one of {SPLITS}, got '{self.split}'")
        if self.format == "coco" and self.split != "train":
            raise ConfigError(f"dataset '{self.name}': format coco is a training source only (split: train); "
                              "validation is per video")
        if self.weight < 0:
            raise ConfigError(f"dataset '{self.name}': weight must be >= 0, got {self.weight}")


@dataclass
class DataConfig:
    root: str = "."                               # base for relative dataset paths
    datasets: list[DatasetConfig] = field(default_factory=list)
    skip_bad_videos: bool = False                 # skip (and count) malformed videos instead of stopping
    clip: ClipConfig = field(default_factory=ClipConfig)
    repeat_threshold: float = 0.0                 # LVIS-style repeat factor threshold t (0 = off)
    # Batches each training rank fetches and formats ahead in iter_torch_batches (with min(4, N) formatting
    # threads; 0: in the training thread). Chosen by measurement on 2 cores: docs/training.md, "Progress and data wait".
    prefetch_batches: int = 1
    decode_resources: dict[str, float] = field(default_factory=dict)  # e.g. {decode: 1}: decode on those nodes
    decode_cpus: float = 1.0                      # CPUs per decode actor
    decode_actors: int = 0                        # most decode actors (0 = as many as the cluster fits)
    decode_batch_size: int = 0                    # clips per decode call (0 = from the clip shape, <= 256)

    def __post_init__(self) -> None:
        for k, v in self.decode_resources.items():
            if k in ("CPU", "GPU") or not isinstance(v, (int, float)) or isinstance(v, bool) or v <= 0:
                raise ConfigError(f"data.decode_resources.{k}: expected a custom resource name with an amount > 0 "
                                  f"(CPUs: data.decode_cpus), got {v!r}")
        if self.decode_cpus < 0 or (self.decode_cpus == 0 and not self.decode_resources):
            raise ConfigError(f"data.decode_cpus must be > 0 (or 0 with data.decode_resources), got {self.decode_cpus}")
        for name in ("decode_actors", "decode_batch_size"):
            if getattr(self, name) < 0:
                raise ConfigError(f"data.{name} must be >= 0, got {getattr(self, name)}")
        if self.prefetch_batches < 0:
            raise ConfigError(f"data.prefetch_batches must be >= 0, got {self.prefetch_batches}")
        train = [d for d in self.datasets if d.split == "train"]
        if train and not any(d.weight > 0 for d in train):
            raise ConfigError("data.datasets: every train split has weight 0; give at least one a weight > 0")

    def resolve(self, p: str) -> Path:
        path = Path(p).expanduser()
        return path if path.is_absolute() else Path(self.root).expanduser() / path

    def splits(self, split: str) -> list[DatasetConfig]:
        return [d for d in self.datasets if d.split == split]


@dataclass
class OptimConfig:
    """AdamW and its per-part learning-rate multipliers."""

    lr: float = 1e-4
    weight_decay: float = 0.05
    backbone_lr_mult: float = 0.1
    tcm_lr_mult: float = 3.0            # TCM learns presence from scratch: measured lr-limited at the base lr
    grad_clip: float = 0.01             # max global grad norm (0 = off)
    amp: bool = True                    # mixed precision; used only on GPU


@dataclass
class ScheduleConfig:
    """The iteration-based schedule: length, linear warmup, then steps of lr x lr_gamma."""

    iterations: int = 200
    warmup_iters: int = 10
    lr_steps: tuple[int, ...] = ()      # iterations at which lr is multiplied by lr_gamma
    lr_gamma: float = 0.1

    def __post_init__(self) -> None:
        if self.iterations < 1:
            raise ConfigError(f"schedule.iterations must be >= 1, got {self.iterations}")


@dataclass
class TrainConfig:
    """The training loop itself: batch, validation, logging and progress display."""

    batch_size: int = 1                 # clips per worker per step
    val_every: int = 100                # validation AP per dataset every N iterations (0 = only at the end)
    val_max_videos: int = 0             # cap per validation split (0 = all)
    val_window: int = 0                 # inference window in frames (0 = whole video)
    log_every: int = 10
    progress_every: int = 50            # driver: a progress line every N iterations without a terminal (a bar on
                                        # one); lines come at reports (log_every); 0: no progress display

    def __post_init__(self) -> None:
        for name in ("batch_size", "log_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"train.{name} must be >= 1, got {getattr(self, name)}")
        if self.progress_every < 0:
            raise ConfigError(f"train.progress_every must be >= 0 (0: no progress display), got {self.progress_every}")


@dataclass
class CheckpointConfig:
    """Ray Train checkpoints of a run."""

    every: int = 50                     # a checkpoint every N iterations (and at the end)
    keep: int = 2                       # checkpoints Ray Train keeps (the newest)

    def __post_init__(self) -> None:
        if self.every < 1:
            raise ConfigError(f"checkpoint.every must be >= 1, got {self.every}")


@dataclass
class ScalingConfig:
    """The Ray Train layout: workers, what each asks for, and restarts."""

    workers: int = 2
    cpus_per_worker: float = 0.5        # leave CPU for Ray Data decoding
    gpus_per_worker: float = 0.0        # > 0 trains on GPUs (nccl)
    threads_per_worker: int = 1
    max_failures: int = 1

    def __post_init__(self) -> None:
        for name in ("workers", "threads_per_worker"):
            if getattr(self, name) < 1:
                raise ConfigError(f"scaling.{name} must be >= 1, got {getattr(self, name)}")


# Keys of the flat `train:` section before it was split into optim / schedule / checkpoint / scaling (configs,
# checkpoints and `train.X=` overrides written before then still load): old train key -> (section, new key).
LEGACY_TRAIN_KEYS: dict[str, tuple[str, str]] = {
    "lr": ("optim", "lr"),
    "weight_decay": ("optim", "weight_decay"),
    "backbone_lr_mult": ("optim", "backbone_lr_mult"),
    "tcm_lr_mult": ("optim", "tcm_lr_mult"),
    "grad_clip": ("optim", "grad_clip"),
    "amp": ("optim", "amp"),
    "iterations": ("schedule", "iterations"),
    "warmup_iters": ("schedule", "warmup_iters"),
    "lr_steps": ("schedule", "lr_steps"),
    "lr_gamma": ("schedule", "lr_gamma"),
    "checkpoint_every": ("checkpoint", "every"),
    "keep_checkpoints": ("checkpoint", "keep"),
    "workers": ("scaling", "workers"),
    "cpus_per_worker": ("scaling", "cpus_per_worker"),
    "gpus_per_worker": ("scaling", "gpus_per_worker"),
    "threads_per_worker": ("scaling", "threads_per_worker"),
    "max_failures": ("scaling", "max_failures"),
}


@dataclass
class TrackingConfig:
    tracking_uri: str | None = None     # None: SQLite in the run directory (or MLFLOW_TRACKING_URI)
    experiment: str = "tmtvis"
    overlays: int = 2                   # validation videos drawn as overlay images per validation
    log_model: bool = True              # the final checkpoint as an MLflow LoggedModel (pyfunc) of the run
    log_best_model: bool = False        # also the checkpoint of the best val.mean_AP, as a LoggedModel "best"


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    taxonomy: BankConfig = field(default_factory=BankConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    scaling: ScalingConfig = field(default_factory=ScalingConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    output_dir: str = "runs"
    seed: int = 0


@dataclass
class InferConfig:
    """`tmtvis infer`: which checkpoint predicts which videos in which label space, where the results go, and the
    actor pool. From the command line, or a YAML file of these keys (`tmtvis infer --config`; flags win)."""
    checkpoint: str                     # checkpoint or run dir, local or object storage, or an MLflow URI
    input: str                          # YouTube-VIS JSON, a folder of frame folders and/or video files, one video
    dataset: str                        # the label space of the results: a dataset of the checkpoint
    out: str                            # output dir, local or object storage (re-use it to resume)
    images: str | None = None           # image root of a JSON input (None: JSON_DIR/JPEGImages)
    address: str | None = None          # Ray cluster (None: RAY_ADDRESS, else a local Ray)
    tracking_uri: str | None = None     # MLflow server of an MLflow checkpoint URI (None: MLFLOW_TRACKING_URI)
    actors: int = 1                     # predictor actors, each holding one model
    cpus_per_actor: float | None = None  # None: the pool fits the cluster's CPUs
    gpus_per_actor: float | None = None  # None: the cluster's GPUs shared evenly, if it has any
    window: int | None = None           # frames per window (None: the checkpoint's train.val_window; 0: whole video)
    topk: int = 10                      # predictions per video
    viz: int = 0                        # overlay MP4s of the first `viz` videos
    skip_bad_videos: bool = False       # list unreadable videos in OUT/failed.json and go on
    progress: bool | None = None        # Ray Data's progress bars (None: on a terminal)
    worker_logs: bool = False           # the Ray workers' and Ray Data's own log lines (-v)

    def __post_init__(self) -> None:
        for name in ("checkpoint", "input", "dataset", "out"):
            if not getattr(self, name):
                raise ConfigError(f"infer: {name} is required (--{name})")
        if self.actors < 1:
            raise ConfigError(f"infer: actors must be >= 1 (--actors), got {self.actors}")
        if self.cpus_per_actor is not None and self.cpus_per_actor <= 0:
            raise ConfigError(f"infer: cpus_per_actor must be > 0 (--cpus-per-actor), got {self.cpus_per_actor}")
        if self.gpus_per_actor is not None and self.gpus_per_actor < 0:
            raise ConfigError(f"infer: gpus_per_actor must be >= 0 (--gpus-per-actor), got {self.gpus_per_actor}")
        if self.topk < 1:
            raise ConfigError(f"infer: topk must be >= 1 (--topk), got {self.topk}")
        if self.window is not None and self.window < 0:
            raise ConfigError(f"infer: window must be >= 0 (--window), got {self.window}")
        if self.viz < 0:
            raise ConfigError(f"infer: viz must be >= 0 (--viz), got {self.viz}")


def load_infer_config(path: str | Path | None, values: dict[str, Any]) -> InferConfig:
    """An InferConfig from a YAML file of its keys (or none), updated by `values` (the flags given)."""
    data = read_yaml_mapping(path, "infer config file", ConfigError) if path is not None else {}
    where = str(path) if path is not None else "infer"
    missing = [f.name for f in dataclasses.fields(InferConfig)
               if f.default is dataclasses.MISSING and f.name not in data and f.name not in values]
    if missing:
        raise ConfigError(f"{where}: {missing[0]} is required (--{missing[0]}"
                          + (f" or {missing[0]}: in the file)" if path is not None else ")"))
    return from_dict(InferConfig, {**data, **{k: str(v) if isinstance(v, Path) else v for k, v in values.items()}},
                     where)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _convert(value: Any, tp: Any, where: str) -> Any:
    """Check/convert one YAML value against a dataclass field type."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{where}: invalid value {value!r}")
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (item,) = typing.get_args(tp)[:1]
        items = [_convert(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
        return items if origin is list else tuple(items)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
    elif tp is Any:
        return value
    raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}")


def legacy_key(key: str) -> str | None:
    """The new name of a dotted key of the old flat train section (train.lr -> optim.lr, train.lr_steps.0 ->
    schedule.lr_steps.0), or None for any other key."""
    parts = key.split(".")
    if len(parts) >= 2 and parts[0] == "train" and parts[1] in LEGACY_TRAIN_KEYS:
        return ".".join((*LEGACY_TRAIN_KEYS[parts[1]], *parts[2:]))
    return None


def migrate_legacy(data: dict, where: str = "config", warn: bool = True) -> dict:
    """A config mapping with the keys of the old flat train section (LEGACY_TRAIN_KEYS) moved to their sections,
    with one warning line naming them; an old key given next to its new one with another value is a ConfigError.
    Every mapping that becomes a Config passes here (from_dict), so old files, checkpoints and sweeps load."""
    train = data.get("train")
    old = [k for k in train if k in LEGACY_TRAIN_KEYS] if isinstance(train, dict) else []
    if not old:
        return data
    data = {**data, "train": {k: v for k, v in train.items() if k not in LEGACY_TRAIN_KEYS}}
    for key in old:
        section, new = LEGACY_TRAIN_KEYS[key]
        target = {} if data.get(section) is None else data[section]
        if not isinstance(target, dict):
            raise ConfigError(f"{where}.{section}: expected a mapping, got {target!r}")
        if new in target and target[new] != train[key]:
            raise ConfigError(f"{where}: train.{key} (the old name of {section}.{new}) and {section}.{new} are both "
                              f"given, with different values ({train[key]!r} and {target[new]!r}); keep "
                              f"{section}.{new}")
        data[section] = {**target, new: train[key]}
    if warn:
        moved = [f"train.{k} is now {'.'.join(LEGACY_TRAIN_KEYS[k])}" for k in old]
        log.warning("%s: %s (the train section was split into optim, schedule, checkpoint and scaling)", where,
                    ", ".join(moved) if len(moved) <= 3 else f"{len(moved)} keys of the old train section read under "
                    f"their new names, e.g. {moved[0]}")
    return data


def from_dict(cls: type, data: Any, where: str = "config") -> Any:
    """Build dataclass `cls` from a mapping; unknown keys and wrong types are ConfigErrors. A Config's mapping may
    hold the keys of the old flat train section (migrate_legacy)."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {data!r}")
    if cls is Config:
        data = migrate_legacy(data, where)
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown key '{unknown[0]}' (known: {', '.join(sorted(names))})")
    kwargs = {k: _convert(v, hints[k], f"{where}.{k}") for k, v in data.items()}
    try:
        return cls(**kwargs)
    except TypeError as e:  # a required field is missing
        raise ConfigError(f"{where}: {e}") from None


def to_dict(cfg: Any) -> dict:
    """Dataclass -> plain dict (tuples as lists), ready for YAML."""
    def plain(v: Any) -> Any:
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v
    return plain(dataclasses.asdict(cfg))


def apply_override(data: dict, override: str) -> None:
    """Apply one 'a.b.c=value' override (value parsed as YAML; list items by index: data.datasets.0.weight=2).
    A key of the old flat train section sets its new key, with a one-line warning (train.lr is now optim.lr)."""
    if "=" not in override:
        raise ConfigError(f"--set {override}: expected key=value")
    key, raw = override.split("=", 1)
    key = key.strip()
    if (new := legacy_key(key)) is not None:
        log.warning("--set %s: %s is now %s", override, key, new)
        key = new
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError:
        value = raw
    problem = set_key(data, key, value)
    if problem is not None:
        raise ConfigError(f"--set {override}: {problem}")


def set_key(data: dict, key: str, value: Any, create: bool = True) -> str | None:
    """Set a value by dotted key (list items by index; with `create`, missing mapping keys are added).

    Returns None, or what is wrong with the key (a part that is no section, list index or, without `create`, key).
    """
    parts = key.split(".")
    node: Any = data
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                return f"'{'.'.join(parts[:i + 1])}' is not a valid list index"
            index: Any = int(part)
        elif isinstance(node, dict):
            if part not in node and not create:
                return f"'{'.'.join(parts[:i + 1])}' is not a config key"
            index = part
            if not last:
                node.setdefault(part, {})
        else:
            return f"'{'.'.join(parts[:i])}' is not a section"
        if last:
            node[index] = value
        else:
            node = node[index]
    return None


PRESETS = ("tiny", "r50", "swinl", "coco_pretrain")  # shipped in the package as tmtvis/configs/NAME.yaml


def preset_path(name: str) -> Path:
    """The shipped YAML of a preset (`tiny`: CPU, the embedded default; `r50`: the paper's; `swinl`: its Swin-L
    setting; `coco_pretrain`: the first stage on COCO images)."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset '{name}': choose one of {', '.join(PRESETS)} or give a YAML file")
    return Path(str(resources.files("tmtvis").joinpath("configs", f"{name}.yaml")))


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Load a YAML config (a file, or a preset name: tiny, r50, swinl, coco_pretrain) or the defaults, and apply
    overrides; errors name the file and key."""
    data: dict = {}
    where = "config"
    if path is not None and str(path) in PRESETS and not Path(path).is_file():
        path = preset_path(str(path))
    if path is not None:
        where = str(path)
        data = read_yaml_mapping(path, "config file", ConfigError)
    data = migrate_legacy(copy.deepcopy(data), where)  # first, so that an override replaces the file's value
    for o in overrides:
        apply_override(data, o)
    return from_dict(Config, data, where)


def config_text(cfg: Config) -> str:
    """The config as YAML, as run dirs, checkpoints and MLflow runs keep it."""
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


def save_config(cfg: Config, path: str | Path) -> None:
    atomic_write_text(path, config_text(cfg))
