"""Shared fixtures: tiny YouTube-VIS-format datasets written to a tmp dir."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest

from helpers import make_dataset, synthetic_trio, tiny_config
from tmtvis.env import apply_defaults

apply_defaults()


@pytest.fixture
def tiny_dataset(tmp_path: Path) -> tuple[Path, Path, dict]:
    """(annotation file, image root, dict) of a valid 2-video dataset."""
    data = make_dataset(tmp_path)
    path = tmp_path / "train.json"
    path.write_text(json.dumps(data))
    return path, tmp_path / "JPEGImages", data


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory) -> Path:
    """Three tiny synthetic presets (8 videos x 4 frames, 64x64) and their `prepare` output."""
    from tmtvis.prepare import prepare

    root = synthetic_trio(tmp_path_factory.mktemp("engine"), videos=8, size=64, val_fraction=0.25)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepare(tiny_config(root), root / "prepared", show_progress=False)
    return root


@pytest.fixture(scope="session")
def ray_local():
    """A local 2-CPU Ray started the way `tmtvis tune` starts one (with the dashboard on 127.0.0.1: Ray Train's
    own placement group cleaner needs it when Tune stops a trial)."""
    import ray

    from tmtvis.ray_session import ray_session

    with ray_session(num_cpus=2, dashboard=True):
        yield ray
