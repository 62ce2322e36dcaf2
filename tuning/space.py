"""A sweep's search space and ASHA settings, read from YAML (no Ray here).

    params:                                  # dotted config key -> distribution (or a fixed value)
      model.set_size: {choice: [0.1, 0.25, 0.5, all]}  # K: fractions of the vocabulary, or 'all'
      loss.taxonomy_weight: {loguniform: [0.1, 10.0]}
      optim.lr: {grid: [1.0e-4, 3.0e-4]}          # every value, each --num-samples times
    scheduler: {metric: val.mean_AP, mode: max, grace_period: 50, reduction_factor: 2}

scheduler.metric must be a name training reports (tmtvis.metric_names): check_metric refuses any other.
"""
from __future__ import annotations

import copy
import logging
import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tmtvis import metric_names as names
from tmtvis.config import Config, from_dict, legacy_key, migrate_legacy, set_key
from tmtvis.errors import ConfigError

log = logging.getLogger(__name__)
KINDS = ("choice", "grid", "uniform", "loguniform", "fixed")
SET_SIZE = "model.set_size"


@dataclass
class Dist:
    kind: str            # one of KINDS
    values: list         # choice/grid: the values; uniform/loguniform: [low, high]; fixed: [value]


@dataclass
class Scheduler:
    """ASHA: trials are compared every time `iteration` crosses grace_period * reduction_factor^k."""

    metric: str = names.MEAN_AP
    mode: str = "max"
    grace_period: int = 50
    reduction_factor: float = 2.0


@dataclass
class Space:
    params: dict[str, Dist] = field(default_factory=dict)
    scheduler: Scheduler = field(default_factory=Scheduler)


def parse_dist(key: str, spec: Any, where: str) -> Dist:
    if not isinstance(spec, dict):
        return Dist("fixed", [spec])
    if len(spec) != 1 or next(iter(spec)) not in KINDS:
        raise ConfigError(f"{where}: params.{key}: expected one of {{{', '.join(KINDS)}: ...}}, got {spec!r}")
    kind, values = next(iter(spec.items()))
    if kind == "fixed":
        return Dist(kind, [values])
    if not isinstance(values, list) or not values:
        raise ConfigError(f"{where}: params.{key}.{kind}: expected a non-empty list, got {values!r}")
    if kind in ("uniform", "loguniform"):
        if len(values) != 2 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            raise ConfigError(f"{where}: params.{key}.{kind}: expected [low, high], got {values!r}")
        low, high = float(values[0]), float(values[1])
        if not low < high or (kind == "loguniform" and low <= 0):
            raise ConfigError(f"{where}: params.{key}.{kind}: need {'0 < ' if kind == 'loguniform' else ''}"
                              f"low < high, got {values!r}")
        values = [low, high]
    return Dist(kind, list(values))


def parse_space(data: Any, where: str = "space") -> Space:
    if not isinstance(data, dict) or not isinstance(data.get("params"), dict) or not data["params"]:
        raise ConfigError(f"{where}: expected a mapping with a non-empty 'params' mapping")
    unknown = sorted(set(data) - {"params", "scheduler"})
    if unknown:
        raise ConfigError(f"{where}: unknown key '{unknown[0]}' (known: params, scheduler)")
    params = {str(k): parse_dist(str(k), v, where) for k, v in data["params"].items()}
    scheduler = from_dict(Scheduler, data.get("scheduler"), f"{where}: scheduler")
    if scheduler.mode not in ("max", "min"):
        raise ConfigError(f"{where}: scheduler.mode must be max or min, got {scheduler.mode!r}")
    if scheduler.grace_period < 1 or scheduler.reduction_factor <= 1:
        raise ConfigError(f"{where}: scheduler needs grace_period >= 1 and reduction_factor > 1")
    return Space(params, scheduler)


def load_space(path: str | Path) -> Space:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: search space file not found") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML: {str(e).splitlines()[0]}") from None
    return parse_space(data, str(path))


def space_to_dict(space: Space) -> dict:
    """The inverse of parse_space (what the sweep logs and stores for --resume)."""
    params = {k: (d.values[0] if d.kind == "fixed" else {d.kind: d.values}) for k, d in space.params.items()}
    return {"params": params, "scheduler": dict(vars(space.scheduler))}


def set_size_value(value: Any, vocab_size: int, where: str = "space") -> int:
    """One K choice over a vocabulary of C: an int is K (clipped to C), a float in (0, 1) a fraction of C
    (at least 1), 'all' is C. Fractions spread the sweep over any vocabulary size."""
    if value == "all":
        return vocab_size
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{where}: params.{SET_SIZE}: expected an int, a fraction in (0, 1) or 'all', got {value!r}")
    if isinstance(value, float):
        if not 0.0 < value < 1.0:
            raise ConfigError(f"{where}: params.{SET_SIZE}: a float is a fraction of the vocabulary and must be in "
                              f"(0, 1), got {value!r}")
        return max(1, round(value * vocab_size))
    if value < 1:
        raise ConfigError(f"{where}: params.{SET_SIZE}: K must be >= 1, got {value!r}")
    return min(int(value), vocab_size)


def clip_set_size(space: Space, vocab_size: int) -> Space:
    """Resolve the K choices (ints, fractions of the vocabulary, 'all') to set sizes, dropping duplicates;
    a uniform/loguniform range of K is clipped to the vocabulary."""
    dist = space.params.get(SET_SIZE)
    if dist is None:
        return space
    space = copy.deepcopy(space)
    if dist.kind in ("choice", "grid", "fixed"):
        values = [set_size_value(v, vocab_size) for v in dist.values]
        space.params[SET_SIZE] = Dist(dist.kind, list(dict.fromkeys(values)))
    else:  # a continuous range of K (rounded per trial), clipped to the vocabulary
        space.params[SET_SIZE] = Dist(dist.kind, [min(v, vocab_size) for v in dist.values])
    return space


def sample(space: Space, rng: random.Random) -> dict[str, Any]:
    """One point of the space (grid keys take a random value); Ray Tune does this in a sweep."""
    point = {}
    for key, d in space.params.items():
        if d.kind in ("choice", "grid", "fixed"):
            point[key] = rng.choice(d.values)
        elif d.kind == "uniform":
            point[key] = rng.uniform(*d.values)
        else:
            point[key] = math.exp(rng.uniform(math.log(d.values[0]), math.log(d.values[1])))
    return point


def trial_config(base: dict, params: dict[str, Any]) -> Config:
    """The config of one trial: the base config (as a dict) with the sampled values set by dotted key (a base or
    key from before the train section was split, e.g. a resumed sweep's, in its new place)."""
    data = migrate_legacy(copy.deepcopy(base), "trial config", warn=False)
    for key, value in params.items():
        if key == SET_SIZE:
            value = int(round(value))  # a uniform K samples floats
        _set(data, key, value)
    return from_dict(Config, data, "trial config")


def check_metric(space: Space, cfg: Config) -> None:
    """Refuse, before any trial starts, an ASHA metric that training never reports with this config."""
    problem = names.metric_problem(space.scheduler.metric, [d.name for d in cfg.data.splits("valid")])
    if problem:
        raise ConfigError(f"search space: scheduler.metric {space.scheduler.metric!r}: {problem}")


def check_keys(space: Space, base: dict) -> None:
    for key in space.params:
        if (new := legacy_key(key)) is not None:
            log.warning("search space: %s is now %s", key, new)
        _set(migrate_legacy(copy.deepcopy(base), "base config", warn=False), key, None)


def _set(data: dict, key: str, value: Any) -> None:
    """Set an EXISTING config value by dotted key (list items by index); a typo is a ConfigError, not a new key.
    A key of the old flat train section (train.lr) sets its new key (optim.lr)."""
    if set_key(data, legacy_key(key) or key, value, create=False) is not None:
        raise ConfigError(f"search space: '{key}' is not a config key")
