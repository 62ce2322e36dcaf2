"""The taxonomy bank: one CLIP text embedding per unified category, stored as Parquet.

Weights come only from a local file; without one the text tower is randomly initialised from a
seed (deterministic, but the embeddings then carry no language prior). Nothing here touches a hub.
"""
from __future__ import annotations

import hashlib
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tmtvis.errors import ConfigError, DataError
from tmtvis.io_utils import atomic_path
from tmtvis.taxonomy import UnifiedTaxonomy

DEFAULT_TEMPLATES = (
    "a photo of a {}.",
    "a photo of the {}.",
    "a video frame showing a {}.",
    "a blurry photo of a {}.",
    "a close-up photo of a {}.",
    "a photo of a small {}.",
    "a photo of a large {}.",
)


@dataclass
class BankConfig:
    clip_model: str = "ViT-S-32-alt"   # an open_clip model name
    clip_weights: str | None = None     # local state-dict file; None = seeded random init
    clip_model_config: str | None = None  # optional open_clip model config JSON, registered as clip_model
    seed: int = 0
    templates: tuple[str, ...] = DEFAULT_TEMPLATES
    batch_size: int = 64


@dataclass
class TaxonomyBank:
    ids: list[int]
    names: list[str]
    sources: list[list[str]]
    embeddings: np.ndarray   # (C, D) float32, rows L2-normalised
    clip_model: str
    weights_hash: str


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_text_encoder(cfg: BankConfig):
    """Create the open_clip model (local weights or seeded random init); returns (model, tokenizer, weights_hash)."""
    import open_clip
    import torch

    if cfg.clip_model_config:
        if not Path(cfg.clip_model_config).is_file():
            raise ConfigError(f"taxonomy.clip_model_config: file not found: {cfg.clip_model_config}")
        # open_clip names a config after its file stem; register it under clip_model whatever the file is called.
        with tempfile.TemporaryDirectory() as tmp:
            shutil.copy(cfg.clip_model_config, Path(tmp) / f"{cfg.clip_model}.json")
            open_clip.add_model_config(tmp)
    if cfg.clip_model not in open_clip.list_models():
        raise ConfigError(f"taxonomy.clip_model: unknown open_clip model '{cfg.clip_model}'")
    if cfg.clip_weights:
        if not Path(cfg.clip_weights).is_file():
            raise ConfigError(f"taxonomy.clip_weights: file not found: {cfg.clip_weights}")
        try:
            model = open_clip.create_model(cfg.clip_model, pretrained=str(cfg.clip_weights), device="cpu")
        except RuntimeError as e:
            raise DataError(cfg.clip_weights, "", f"does not match model '{cfg.clip_model}': "
                                                  f"{str(e).splitlines()[0]}") from None
        weights_hash = "sha256:" + file_sha256(cfg.clip_weights)
    else:
        warnings.warn(f"no CLIP weights file given: '{cfg.clip_model}' text tower is randomly initialised "
                      f"(seed {cfg.seed}); taxonomy embeddings carry no language prior", stacklevel=2)
        with torch.random.fork_rng():
            torch.manual_seed(cfg.seed)
            model = open_clip.create_model(cfg.clip_model, pretrained=None, device="cpu")
        h = hashlib.sha256()
        for k, v in sorted(model.state_dict().items()):
            h.update(k.encode())
            h.update(v.detach().contiguous().numpy().tobytes())
        weights_hash = f"random-seed-{cfg.seed}:sha256:" + h.hexdigest()
    model.eval()
    return model, open_clip.get_tokenizer(cfg.clip_model), weights_hash


def encode_names(names: list[str], cfg: BankConfig, show_progress: bool = False) -> tuple[np.ndarray, str]:
    """Prompt-ensembled, L2-normalised text embeddings (C, D) for category names, and the weights hash."""
    import torch
    from tqdm.auto import tqdm

    model, tokenizer, weights_hash = load_text_encoder(cfg)
    out = []
    with torch.no_grad():
        for start in tqdm(range(0, len(names), cfg.batch_size), desc="taxonomy bank", disable=None if show_progress else True):
            batch = names[start:start + cfg.batch_size]
            per_template = []
            for template in cfg.templates:
                emb = model.encode_text(tokenizer([template.format(n) for n in batch])).float()
                per_template.append(torch.nn.functional.normalize(emb, dim=-1))
            mean = torch.stack(per_template).mean(0)  # (b, D)
            out.append(torch.nn.functional.normalize(mean, dim=-1))
    return torch.cat(out).numpy().astype(np.float32), weights_hash


def build_bank(taxonomy: UnifiedTaxonomy, cfg: BankConfig, show_progress: bool = False) -> TaxonomyBank:
    emb, weights_hash = encode_names(list(taxonomy.names), cfg, show_progress)
    return TaxonomyBank(list(range(len(taxonomy))), list(taxonomy.names), [list(s) for s in taxonomy.sources],
                        emb, cfg.clip_model, weights_hash)


def save_bank(path: str | Path, bank: TaxonomyBank) -> None:
    dim = bank.embeddings.shape[1]
    table = pa.table({
        "unified_id": pa.array(bank.ids, pa.int32()),
        "name": pa.array(bank.names, pa.string()),
        "sources": pa.array(bank.sources, pa.list_(pa.string())),
        "embedding": pa.FixedSizeListArray.from_arrays(pa.array(bank.embeddings.reshape(-1), pa.float32()), dim),
    })
    meta = {b"clip_model": bank.clip_model.encode(), b"weights_hash": bank.weights_hash.encode(),
            b"dim": str(dim).encode()}
    table = table.replace_schema_metadata(meta)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def load_bank(path: str | Path) -> TaxonomyBank:
    try:
        table = pq.read_table(path)
    except FileNotFoundError:
        raise DataError(path, "", "file not found") from None
    except (pa.ArrowInvalid, OSError) as e:
        raise DataError(path, "", f"not a Parquet file: {e}") from None
    meta = table.schema.metadata or {}
    needed = {"unified_id", "name", "sources", "embedding"}
    if not needed <= set(table.column_names) or b"clip_model" not in meta:
        raise DataError(path, "", f"not a taxonomy bank (needs columns {sorted(needed)} and CLIP metadata)")
    dim = int(meta[b"dim"])
    emb = table.column("embedding").combine_chunks().flatten().to_numpy().reshape(-1, dim).astype(np.float32)
    return TaxonomyBank(table.column("unified_id").to_pylist(), table.column("name").to_pylist(),
                        table.column("sources").to_pylist(), emb, meta[b"clip_model"].decode(),
                        meta[b"weights_hash"].decode())
