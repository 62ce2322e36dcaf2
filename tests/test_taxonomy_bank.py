import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from tmtvis.errors import ConfigError, DataError
from tmtvis.taxonomy import UnifiedTaxonomy
from tmtvis.taxonomy_bank import BankConfig, build_bank, file_sha256, load_bank, save_bank

TINY_CLIP = {"embed_dim": 32,
             "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16},
             "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}


@pytest.fixture
def tiny_clip(tmp_path: Path) -> BankConfig:
    cfg_file = tmp_path / "tmtvis-test-clip.json"
    cfg_file.write_text(json.dumps(TINY_CLIP))
    return BankConfig(clip_model="tmtvis-test-clip", clip_model_config=str(cfg_file), seed=3,
                      templates=("a photo of a {}.", "a video of a {}."))


@pytest.fixture
def taxonomy() -> UnifiedTaxonomy:
    cats = [{"id": 1, "name": "person"}, {"id": 2, "name": "motorbike"}, {"id": 3, "name": "Giant_panda"}]
    return UnifiedTaxonomy.build([("a", "ytvis", cats), ("b", "ovis", [{"id": 1, "name": "Motorcycle"}])])


def test_random_init_is_seeded_and_warns(tiny_clip, taxonomy):
    with pytest.warns(UserWarning, match="no language prior"):
        a = build_bank(taxonomy, tiny_clip)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        b = build_bank(taxonomy, tiny_clip)
    assert a.embeddings.shape == (3, 32) and a.embeddings.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(a.embeddings, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(a.embeddings, b.embeddings)
    assert a.weights_hash == b.weights_hash and a.weights_hash.startswith("random-seed-3:")
    assert a.names == ["person", "motorcycle", "giant panda"] and a.sources[1] == ["a", "b"]


def test_local_checkpoint_reproduces_embeddings(tiny_clip, taxonomy, tmp_path):
    import open_clip

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = build_bank(taxonomy, tiny_clip)
        torch.manual_seed(tiny_clip.seed)
        model = open_clip.create_model("tmtvis-test-clip", pretrained=None)
    weights = tmp_path / "clip.pt"
    torch.save(model.state_dict(), weights)
    tiny_clip.clip_weights = str(weights)
    tiny_clip.seed = 999  # ignored when weights are given
    from_file = build_bank(taxonomy, tiny_clip)
    np.testing.assert_allclose(from_file.embeddings, reference.embeddings, atol=1e-6)
    assert from_file.weights_hash == "sha256:" + file_sha256(weights)

    save_bank(tmp_path / "bank.parquet", from_file)
    back = load_bank(tmp_path / "bank.parquet")
    np.testing.assert_array_equal(back.embeddings, from_file.embeddings)
    assert (back.ids, back.names, back.sources) == (from_file.ids, from_file.names, from_file.sources)
    assert back.clip_model == "tmtvis-test-clip" and back.weights_hash == from_file.weights_hash


def test_config_errors(tiny_clip, taxonomy, tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        build_bank(taxonomy, BankConfig(clip_model="tmtvis-test-clip", clip_model_config=tiny_clip.clip_model_config,
                                        clip_weights=str(tmp_path / "missing.pt")))
    with pytest.raises(ConfigError, match="unknown open_clip model"):
        build_bank(taxonomy, BankConfig(clip_model="no-such-model"))
    with pytest.raises(DataError, match="not a Parquet file|file not found"):
        (tmp_path / "x.parquet").write_text("nope")
        load_bank(tmp_path / "x.parquet")
