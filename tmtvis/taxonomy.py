"""The unified taxonomy: one label space over several datasets, with id maps both ways."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from tmtvis.data.ytvis_format import read_json
from tmtvis.errors import DataError
from tmtvis.io_utils import atomic_write_text
from tmtvis.resources import load_json


def normalize_name(name: str) -> str:
    """'Giant_panda' -> 'giant panda': lower case, '_'/'-' to spaces, whitespace collapsed."""
    return re.sub(r"\s+", " ", name.replace("_", " ").replace("-", " ")).strip().lower()


def canonical_name(name: str, fmt: str = "ytvis", synonyms: dict | None = None) -> str:
    """The unified name of a dataset category: normalised, then format overrides, then aliases."""
    syn = synonyms if synonyms is not None else load_json("synonyms.json")
    norm = normalize_name(name)
    norm = syn.get("format_overrides", {}).get(fmt, {}).get(norm, norm)
    return syn.get("aliases", {}).get(norm, norm)


@dataclass
class DatasetLabels:
    """One dataset's label space and its maps to and from the unified ids."""

    name: str
    format: str
    categories: list[dict]            # the dataset's own [{id, name}]
    to_unified: dict[int, int]        # dataset category id -> unified id
    from_unified: dict[int, int]      # unified id -> dataset category id

    @property
    def unified_ids(self) -> list[int]:
        """Unified ids of this dataset's categories, in the dataset's category order."""
        return [self.to_unified[c["id"]] for c in self.categories]


@dataclass
class UnifiedTaxonomy:
    names: list[str]                                  # unified id -> canonical name
    sources: list[list[str]]                          # unified id -> datasets that have it
    datasets: dict[str, DatasetLabels] = field(default_factory=dict)
    covers: dict[str, list[str]] = field(default_factory=dict)  # coarse name -> finer names it includes (both kept)

    def __len__(self) -> int:
        return len(self.names)

    @classmethod
    def build(cls, datasets: Iterable[tuple[str, str, list[dict]]], synonyms: dict | None = None) -> "UnifiedTaxonomy":
        """Build from (dataset name, format, categories) triples; unified ids follow first appearance."""
        syn = synonyms if synonyms is not None else load_json("synonyms.json")
        tax = cls(names=[], sources=[])
        index: dict[str, int] = {}
        for ds_name, fmt, categories in datasets:
            if ds_name in tax.datasets:
                if _same_categories(tax.datasets[ds_name].categories, categories):
                    continue  # e.g. the train and valid splits of one dataset
                raise DataError(ds_name, "categories", "two splits of this dataset have different category lists")
            to_u: dict[int, int] = {}
            from_u: dict[int, int] = {}
            for c in categories:
                name = canonical_name(c["name"], fmt, syn)
                if name not in index:
                    index[name] = len(tax.names)
                    tax.names.append(name)
                    tax.sources.append([])
                uid = index[name]
                if uid in from_u:
                    other = next(k for k, v in to_u.items() if v == uid)
                    raise DataError(ds_name, f"category {c['id']} ({c['name']})",
                                    f"merges with category {other} into unified '{name}'; a dataset cannot have two")
                to_u[c["id"]] = uid
                from_u[uid] = c["id"]
                if ds_name not in tax.sources[uid]:
                    tax.sources[uid].append(ds_name)
            cats = [{"id": c["id"], "name": c["name"]} for c in categories]
            tax.datasets[ds_name] = DatasetLabels(ds_name, fmt, cats, to_u, from_u)
        for coarse, fine in syn.get("covers", {}).items():
            present = [f for f in fine if f in index]
            if coarse in index and present:
                tax.covers[coarse] = present
        return tax

    def to_json(self) -> dict:
        return {
            "categories": [{"id": i, "name": n, "sources": s} for i, (n, s) in enumerate(zip(self.names, self.sources))],
            "datasets": {
                d.name: {"format": d.format, "categories": d.categories,
                         "to_unified": {str(k): v for k, v in d.to_unified.items()}}
                for d in self.datasets.values()
            },
            "covers": self.covers,
        }

    def save(self, path: str | Path) -> None:
        atomic_write_text(path, json.dumps(self.to_json(), indent=1))

    @classmethod
    def load(cls, path: str | Path) -> "UnifiedTaxonomy":
        data = read_json(path)
        try:
            cats = data["categories"]
            tax = cls(names=[c["name"] for c in cats], sources=[list(c["sources"]) for c in cats])
            for name, d in data["datasets"].items():
                to_u = {int(k): int(v) for k, v in d["to_unified"].items()}
                tax.datasets[name] = DatasetLabels(name, d["format"], d["categories"], to_u,
                                                   {v: k for k, v in to_u.items()})
            tax.covers = {str(k): [str(x) for x in v] for k, v in data.get("covers", {}).items()}
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise DataError(path, "", f"not a taxonomy file ({type(e).__name__}: {e})") from None
        return tax


def _same_categories(a: list[dict], b: list[dict]) -> bool:
    return sorted((c["id"], c["name"]) for c in a) == sorted((c["id"], c["name"]) for c in b)
