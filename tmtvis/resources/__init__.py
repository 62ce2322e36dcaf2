"""Data files shipped inside the package (category lists of the real datasets, synonyms)."""
from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from typing import Any


def load_json(name: str) -> Any:
    """Load one JSON file shipped in `tmtvis/resources/`."""
    return json.loads(resources.files(__package__).joinpath(name).read_text(encoding="utf-8"))


@lru_cache(maxsize=1)
def vis_categories() -> dict[str, list[dict]]:
    """Category lists of the public VIS datasets: {'ytvis_2019'|'ytvis_2021'|'ovis'|'uvo_dense': [{id, name}]}."""
    data = load_json("vis_categories.json")
    return {k: v for k, v in data.items() if not k.startswith("_")}
