import time

import numpy as np
import torch
import torch.nn.functional as F
from model_synthetic import synthetic_clip
from pycocotools import mask as mask_utils
from scipy.optimize import linear_sum_assignment

from tmtvis.inference import VideoPredictor
from tmtvis.losses import build_criterion
from tmtvis.losses import LossConfig
from tmtvis.models import ModelConfig, build_model

torch.set_num_threads(2)
C = 12


def video_iou(segs: list, gt: torch.Tensor) -> float:
    pred = np.stack([np.zeros(gt.shape[1:], bool) if s is None else
                     mask_utils.decode({"size": s["size"], "counts": s["counts"].encode()}).astype(bool) for s in segs])
    g = gt.numpy()
    return float((pred & g).sum() / max((pred | g).sum(), 1))


def test_tiny_model_overfits_one_clip():
    torch.manual_seed(0)
    frames, target = synthetic_clip(t=3, size=64)
    bank = F.normalize(torch.randn(C, 32, generator=torch.Generator().manual_seed(1)), dim=-1)
    model = build_model(ModelConfig(), bank)
    criterion = build_criterion(C, LossConfig(num_points=256))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
    predictor = VideoPredictor(model, topk=3)
    classes = list(range(C))
    start, ious = time.time(), []
    for step in range(1, 121):
        model.train()
        loss = criterion(model(frames[None]), [target])["loss"]
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 20:
            continue
        preds = predictor.predict(frames, (64, 64), classes, {c: c for c in classes})
        # IoU if the category is right, else 0; best assignment of the top-3 predictions to the 3 objects.
        score = np.array([[video_iou(p["segmentations"], target["masks"][i]) * (p["category_id"] == lab)
                           for p in preds] for i, lab in enumerate(target["labels"].tolist())])
        rows, cols = linear_sum_assignment(-score)
        ious = score[rows, cols]
        print(f"step {step}: loss {loss.item():.3f}, matched IoUs {np.round(ious, 3).tolist()}, "
              f"{time.time() - start:.1f}s")
        if len(ious) == 3 and ious.min() > 0.8:
            break
    assert len(ious) == 3 and ious.min() > 0.8, ious
