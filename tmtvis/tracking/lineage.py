"""Dataset lineage of a training run: the manifests it read as MLflow dataset inputs, the taxonomy and bank as tags."""
from __future__ import annotations

import warnings
from pathlib import Path

from tmtvis.data.manifest import manifest_path
from tmtvis.taxonomy_bank import file_sha256, load_bank


def manifest_dataset(path: Path, name: str):
    """One manifest as an MLflow dataset entity (MLflow computes its digest, schema and row count)."""
    import mlflow.data
    import pandas as pd

    with warnings.catch_warnings():  # "source can be interpreted in multiple ways" (a local file), integer hints
        warnings.simplefilter("ignore")
        dataset = mlflow.data.from_pandas(pd.read_parquet(path), source=str(path.resolve()), name=name)
        return dataset._to_mlflow_entity()  # what mlflow.log_input logs for the active run; here a run by id


def log_lineage(client, run_id: str, prepared: Path, splits: dict[str, list]) -> None:
    """Log each split's manifest as a run input ({context: [DatasetSplit]}) and the taxonomy/bank hashes as tags."""
    from mlflow.entities import DatasetInput, InputTag
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

    inputs = []
    for context, items in splits.items():
        for ds in items:
            data = manifest_dataset(manifest_path(prepared, ds.name, ds.split), f"{ds.name}/{ds.split}")
            inputs.append(DatasetInput(data, tags=[InputTag(MLFLOW_DATASET_CONTEXT, context)]))
    if inputs:
        client.log_inputs(run_id, datasets=inputs)
    bank = load_bank(prepared / "bank.parquet")
    for key, value in {"tmtvis.taxonomy_sha256": file_sha256(prepared / "taxonomy.json"),
                       "tmtvis.bank_sha256": file_sha256(prepared / "bank.parquet"),
                       "tmtvis.bank_clip_model": bank.clip_model, "tmtvis.bank_weights": bank.weights_hash}.items():
        client.set_tag(run_id, key, value)
