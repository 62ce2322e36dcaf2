"""`model.init_weights`: start from a Mask2Former(-VIS) checkpoint (detectron2 model zoo, transformers, tmtvis).

Safe loaders only: torch.load(weights_only=True), safetensors, and for detectron2's `.pkl` a restricted unpickler
that admits dicts, lists, tuples, numpy arrays/dtypes and scalars. Loading reports every tensor: loaded,
re-initialised (shape mismatch), new (in the model, not in the checkpoint: TCM, TIM...) and unused.
"""
from __future__ import annotations

import io
import json
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from tmtvis.checkpoint import read_state
from tmtvis.errors import ConfigError
from tmtvis.models.convert import convert_state
from tmtvis.resources import load_json
from tmtvis.taxonomy import UnifiedTaxonomy, canonical_name

# detectron2 checkpoints carry no class names: the zoo's vocabularies, told apart by their size (K + no-object).
ZOO_VOCABULARIES = {80: "coco", 40: "ytvis_2019", 25: "ovis"}
CLASS_HEAD = ("decoder.class_head.fc.weight", "decoder.class_head.fc.bias")
KEEP = ("bank",)  # this run's taxonomy bank, never a checkpoint's


def vocabulary(name: str) -> tuple[list[str], str]:
    """Category names (contiguous order, as the checkpoints' class heads) and the format of a known vocabulary."""
    cats = load_json("vis_categories.json")
    if name == "coco":  # UVO-dense is COCO's 80 thing classes in COCO order, plus 'other'
        return [c["name"] for c in cats["uvo_dense"] if c["name"] != "other"], "uvo"
    if name not in cats or name.startswith("_"):
        raise ConfigError(f"model.init_weights_classes: unknown vocabulary {name!r} "
                          f"(known: coco, {', '.join(k for k in cats if not k.startswith('_'))})")
    return [c["name"] for c in sorted(cats[name], key=lambda c: c["id"])], {"ytvis_2019": "ytvis", "ytvis_2021": "ytvis",
                                                                           "ovis": "ovis"}.get(name, "uvo")


class _RestrictedUnpickler(pickle.Unpickler):
    """Admits only what a model-zoo .pkl holds: containers, numpy arrays, dtypes and scalars."""

    ALLOWED = {("collections", "OrderedDict"), ("numpy", "ndarray"), ("numpy", "dtype"),
               ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
               ("_codecs", "encode")}  # protocol-2 pickles spell bytes as _codecs.encode(str, 'latin1')

    def find_class(self, module: str, name: str):
        if (module, name) in self.ALLOWED or (module == "numpy" and name.endswith("Dtype")) or \
                (module.startswith("numpy.dtypes") and name.endswith("DType")):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name}")


def safe_unpickle(data: bytes, path: Path) -> object:
    """A .pkl's content through the restricted unpickler; anything else is refused in one line."""
    try:
        return _RestrictedUnpickler(io.BytesIO(data), encoding="latin1").load()
    except pickle.UnpicklingError as e:
        raise ConfigError(f"model.init_weights {path}: refused, the pickle asks for {e} "
                          "(only dicts, lists, tuples, numpy arrays and scalars are loaded)") from None
    except Exception as e:  # truncated or not a pickle
        raise ConfigError(f"model.init_weights {path}: not a readable .pkl ({type(e).__name__})") from None


@dataclass
class Source:
    """A checkpoint read into tmtvis's key layout."""

    path: Path
    layout: str  # detectron2 | transformers | tmtvis
    state: dict[str, torch.Tensor]
    class_names: list[str] | None = None
    class_format: str = "ytvis"
    vocabulary: str = ""
    unmapped: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)


def _tensors(state: dict, path: Path) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in state.items():
        if isinstance(v, np.ndarray):
            v = torch.from_numpy(np.ascontiguousarray(v))
        if not isinstance(v, torch.Tensor):
            raise ConfigError(f"model.init_weights {path}: entry {k!r} is not an array ({type(v).__name__})")
        out[str(k).removeprefix("module.")] = v
    return out


def read_source(path: str | Path, classes: str | None = None) -> Source:
    """Read a detectron2 .pkl/.pth, a transformers directory (config.json + model.safetensors) or a tmtvis checkpoint."""
    path = Path(path)
    if path.is_dir():
        if (path / "state.pt").is_file():
            return _read_tmtvis(path)
        if (path / "config.json").is_file():
            return _read_transformers(path)
        raise ConfigError(f"model.init_weights {path}: a directory needs state.pt (tmtvis) or config.json and "
                          "model.safetensors (transformers)")
    if not path.is_file():
        raise ConfigError(f"model.init_weights: no such file or directory {str(path)!r}")
    if path.suffix == ".pkl":
        obj = safe_unpickle(path.read_bytes(), path)
    else:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:
            raise ConfigError(f"model.init_weights {path}: not a weights-only torch file (or corrupted)") from None
    state = obj.get("model", obj) if isinstance(obj, dict) else None
    if not isinstance(state, dict):
        raise ConfigError(f"model.init_weights {path}: no model state dict inside")
    state = _tensors(state, path)
    if "bank" in state:
        return Source(path, "tmtvis", state)
    conv = convert_state(state, "detectron2")
    if "backbone.absolute_pos_embed" in conv.unmapped:
        raise ConfigError(f"model.init_weights {path}: a Swin with an absolute position embedding (APE) has no "
                          "torchvision counterpart; only the zoo's Swin without APE (MODEL.SWIN.APE: False) loads")
    src = Source(path, "detectron2", conv.state, unmapped=conv.unmapped, ignored=conv.ignored)
    head = conv.state.get(CLASS_HEAD[1])
    vocab = classes or (ZOO_VOCABULARIES.get(head.shape[0] - 1) if head is not None else None)
    if vocab:
        src.class_names, src.class_format = vocabulary(vocab)
        src.vocabulary = vocab
        if head is not None and len(src.class_names) != head.shape[0] - 1:
            raise ConfigError(f"model.init_weights_classes: {vocab} has {len(src.class_names)} classes, the "
                              f"checkpoint's class head {head.shape[0] - 1}")
    return src


def _read_transformers(path: Path) -> Source:
    from safetensors.torch import load_file

    files = sorted(path.glob("*.safetensors"))
    if not files:
        raise ConfigError(f"model.init_weights {path}: no .safetensors file beside config.json")
    try:
        config = json.loads((path / "config.json").read_text())
        state = {}
        for f in files:
            state.update(load_file(str(f)))
    except Exception as e:
        raise ConfigError(f"model.init_weights {path}: unreadable transformers checkpoint ({type(e).__name__})") from None
    if config.get("model_type") != "mask2former":
        raise ConfigError(f"model.init_weights {path}: config.json model_type is {config.get('model_type')!r}, "
                          "not 'mask2former'")
    conv = convert_state(state, "transformers")
    src = Source(path, "transformers", conv.state, unmapped=conv.unmapped, ignored=conv.ignored)
    labels = config.get("id2label") or {}
    if labels:
        src.class_names = [labels[str(i)] if str(i) in labels else labels.get(i, "") for i in range(len(labels))]
        src.class_format, src.vocabulary = "uvo", "id2label"  # transformers' zoo models are COCO-named
    return src


def _read_tmtvis(path: Path) -> Source:
    state = read_state(path / "state.pt")["model"]
    src = Source(path, "tmtvis", dict(state))
    if (path / "taxonomy.json").is_file():
        src.class_names = UnifiedTaxonomy.load(path / "taxonomy.json").names
        src.class_format, src.vocabulary = "unified", "taxonomy.json"
    return src


@dataclass
class LoadReport:
    """What init_weights did to each model tensor; `text()` is the one summary printed."""

    source: Source
    loaded: list[str] = field(default_factory=list)
    reinit: list[tuple[str, tuple, tuple]] = field(default_factory=list)  # key, checkpoint shape, model shape
    new: list[str] = field(default_factory=list)
    unused: list[str] = field(default_factory=list)
    class_rows: dict[int, int] = field(default_factory=dict)  # unified id -> checkpoint class index
    head_by_name: bool = False  # the class head is filled row by row from matching category names
    unified_names: list[str] = field(default_factory=list)

    def text(self) -> str:
        s = self.source

        def group(keys: list[str]) -> str:
            counts: dict[str, int] = {}
            for k in keys:
                counts[k.split(".")[0]] = counts.get(k.split(".")[0], 0) + 1
            return ", ".join(f"{m} {n}" for m, n in counts.items()) or "none"

        lines = [f"init_weights {s.path} ({s.layout} layout"
                 + (f", classes: {s.vocabulary} ({len(s.class_names)})" if s.class_names else ", no class names") + ")",
                 f"  loaded: {len(self.loaded)} tensors ({group(self.loaded)})"]
        if self.head_by_name:
            matched = sorted(self.class_rows)
            names = ", ".join(self.unified_names[i] for i in matched[:12]) + (" ..." if len(matched) > 12 else "")
            lines.append(f"  class head: {len(matched)} of {len(self.unified_names)} unified categories filled from "
                         f"the checkpoint's classes by name ({names or 'none'}) and the no-object row; "
                         f"{len(self.unified_names) - len(matched)} start fresh")
        lines.append(f"  re-initialised (shape mismatch): {len(self.reinit)}"
                     + "".join(f"\n    {k}: checkpoint {list(a)} vs model {list(b)}" for k, a, b in self.reinit))
        lines.append(f"  new (not in the checkpoint, initialised fresh): {len(self.new)} tensors ({group(self.new)})")
        lines.append(f"  unused from the checkpoint: {len(self.unused) + len(s.unmapped)}"
                     + "".join(f"\n    {k}" for k in s.unmapped + self.unused))
        if s.ignored:
            lines.append(f"  ignored (training-only buffers): {', '.join(s.ignored)}")
        return "\n".join(lines)


def _class_rows(source: Source, unified_names: list[str]) -> dict[int, int]:
    if not source.class_names:
        return {}
    if source.class_format == "unified":
        by_name = {n: i for i, n in enumerate(source.class_names)}
    else:
        by_name = {}
        for i, n in enumerate(source.class_names):
            by_name.setdefault(canonical_name(n, source.class_format), i)
    return {u: by_name[n] for u, n in enumerate(unified_names) if n in by_name}


def plan(model: torch.nn.Module, source: Source, unified_names: list[str]) -> tuple[LoadReport, dict]:
    """Decide, tensor by tensor, what loads (without changing the model): the report and the tensors to copy."""
    report = LoadReport(source, unified_names=list(unified_names))
    target = model.state_dict()
    take: dict[str, torch.Tensor] = {}
    report.head_by_name = bool(source.class_names) and all(k in target and k in source.state for k in CLASS_HEAD)
    if report.head_by_name:
        report.class_rows = _class_rows(source, unified_names)
    for key, value in source.state.items():
        if key in KEEP:
            continue
        if key not in target:
            report.unused.append(key)
        elif key in CLASS_HEAD and report.head_by_name and value.shape[1:] == target[key].shape[1:]:
            take[key] = value  # rows filled by category name in apply()
        elif tuple(value.shape) != tuple(target[key].shape):
            report.reinit.append((key, tuple(value.shape), tuple(target[key].shape)))
        else:
            take[key] = value
    report.loaded = sorted(take)
    done = set(take) | {k for k, _, _ in report.reinit} | set(KEEP)
    report.new = [k for k in target if k not in done]
    return report, take


def apply_init_weights(model: torch.nn.Module, path: str | Path, unified_names: list[str],
                       classes: str | None = None) -> LoadReport:
    """Load `path` into `model` (in place) as planned; the class head row by matching category name."""
    source = read_source(path, classes)
    report, take = plan(model, source, unified_names)
    target = model.state_dict()
    with torch.no_grad():
        for key, value in take.items():
            dst = target[key]
            if key in CLASS_HEAD and report.head_by_name:
                for u, k in report.class_rows.items():
                    dst[u].copy_(value[k])
                dst[-1].copy_(value[-1])  # no-object
            else:
                dst.copy_(value.to(dst.dtype))
    return report


def inspect_weights(path: str | Path, model: torch.nn.Module, unified_names: list[str],
                    classes: str | None = None) -> LoadReport:
    """What apply_init_weights would do, the model untouched."""
    return plan(model, read_source(path, classes), unified_names)[0]


def default_unified_names() -> list[str]:
    """The unified taxonomy of YouTube-VIS 2019, 2021, OVIS and UVO-dense (the r50 preset's vocabulary, 106)."""
    cats = load_json("vis_categories.json")
    fmts = {"ytvis_2019": "ytvis", "ytvis_2021": "ytvis", "ovis": "ovis", "uvo_dense": "uvo"}
    return UnifiedTaxonomy.build([(k, fmts[k], cats[k]) for k in fmts]).names


