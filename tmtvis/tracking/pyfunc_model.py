"""The trained model as an MLflow pyfunc, logged as code (models-from-code): nothing pickled.

`mlflow.pyfunc.load_model(uri).predict(frames)`: `frames` is one video as uint8 (T, H, W, 3) RGB; the result
is its tracks, best first: [{"category_id": the dataset's own id, "score": float, "segmentations": one
compressed COCO RLE ({"size": [H, W], "counts": str}) or None per frame}]. Params: `dataset` (a label space
of the checkpoint), `topk`, `window` (frames per window; 0 = the whole video as one clip).
The loader reads the checkpoint's state.pt with torch.load(weights_only=True); it needs tmtvis importable.
"""
from __future__ import annotations

from typing import Any

import mlflow
import numpy as np
from mlflow.pyfunc import PythonModel

from tmtvis.errors import TmtvisError

CHECKPOINT = "checkpoint"  # the artifact key (and folder) holding state.pt, config.yaml, taxonomy.json


class TmtvisVideoModel(PythonModel):
    def load_context(self, context) -> None:
        # lazy: torch loads when MLflow loads the model, not when log_model runs this file (models from code)
        from tmtvis.checkpoint import load_checkpoint

        self.ckpt = load_checkpoint(context.artifacts[CHECKPOINT])

    def predict(self, context, model_input: np.ndarray, params: dict[str, Any] | None = None) -> list[dict]:
        # lazy: torch, as in load_context
        from tmtvis.inference.preprocess import resize_frames
        from tmtvis.inference.video_predictor import VideoPredictor, default_overlap

        params = params or {}
        frames = np.asarray(model_input)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise TmtvisError(f"expected one video as uint8 frames (T, H, W, 3), got {frames.dtype} {frames.shape}")
        cfg = self.ckpt.cfg
        dataset = params.get("dataset") or next(iter(self.ckpt.taxonomy.datasets))
        labels = self.ckpt.labels(dataset)
        window = params.get("window")
        window = (cfg.train.val_window if window is None else int(window)) or None
        predictor = VideoPredictor(self.ckpt.model, window=window, overlap=default_overlap(window),
                                   topk=int(params.get("topk") or 10))
        video = resize_frames(list(frames), cfg.data.clip.short_edge[0])
        return predictor.predict(video, frames.shape[1:3], labels.unified_ids, labels.from_unified)


mlflow.models.set_model(TmtvisVideoModel())
