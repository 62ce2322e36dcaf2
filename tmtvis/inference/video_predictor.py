"""Per-video inference in the YouTube-VIS results format, whole-clip or in overlapping linked windows."""
from __future__ import annotations

import contextlib
from typing import Callable, Union

import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import nn

from tmtvis.data.batch import class_mask
from tmtvis.data.rle import encode_nonempty

SetIds = Union[torch.Tensor, Callable[[int, int], "torch.Tensor | None"], None]


def default_overlap(window: int | None) -> int:
    """The overlap of consecutive windows, in frames: a quarter of the window (none for whole videos)."""
    return max(0, (window or 0) // 4)


def window_starts(t: int, window: int, overlap: int) -> list[int]:
    """Start frames of windows of `window` frames overlapping by `overlap`; the last ends at frame t."""
    if t <= window:
        return [0]
    stride = window - overlap
    starts = list(range(0, t - window, stride))
    return starts + [t - window]


def link(prev: torch.Tensor, cur: torch.Tensor) -> torch.Tensor:
    """Hungarian matching on cosine similarity: -> perm with cur[perm[i]] continuing track i of prev (Q, D)."""
    sim = F.normalize(prev.float().cpu(), dim=-1) @ F.normalize(cur.float().cpu(), dim=-1).T  # (Q, Q)
    rows, cols = linear_sum_assignment(-sim.float().numpy())
    perm = torch.empty(prev.shape[0], dtype=torch.long)
    perm[torch.as_tensor(rows)] = torch.as_tensor(cols, dtype=torch.long)
    return perm


def no_autocast() -> contextlib.ExitStack:
    """Post-processing runs in float32 even when the caller runs the model under autocast."""
    stack = contextlib.ExitStack()
    stack.enter_context(torch.autocast("cpu", enabled=False))
    if torch.cuda.is_available():
        stack.enter_context(torch.autocast("cuda", enabled=False))
    return stack


class VideoPredictor:
    """Runs `model` over a video and returns its top-k tracks.

    Windows of `window` frames (None: the whole video as one clip) overlap by `overlap` frames; the queries of
    each window are matched to the previous window's by Hungarian matching on cosine similarity of their
    embeddings. Per window only the per-query class probabilities and the stride-4 mask logits (float16, on
    CPU; overlapping frames averaged) are kept, so model memory is that of one window and the stored masks cost
    Q*(H/4)*(W/4)*2 bytes per frame. Class scores: per window a softmax over the target dataset's categories plus
    the no-object class (which is then dropped, as Mask2Former-VIS does over the full label space), averaged
    over the windows of a track.
    """

    def __init__(self, model: nn.Module, window: int | None = None, overlap: int = 0, topk: int = 10,
                 frame_chunk: int = 16) -> None:
        if window is not None and not 0 <= overlap < window:
            raise ValueError(f"need 0 <= overlap < window, got overlap={overlap}, window={window}")
        self.model, self.window, self.overlap, self.topk, self.frame_chunk = model, window, overlap, topk, frame_chunk

    @torch.no_grad()
    def run_windows(self, frames: torch.Tensor, classes: torch.Tensor, set_ids: SetIds = None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """frames (T, 3, H, W) -> class probs (Q, Cd) averaged over windows, mask logits (Q, T, H/4, W/4) float16.

        The taxonomy set is chosen among the target dataset's categories; set_ids (1, K) forces it for every
        window, or set_ids(start, end) for the window of frames start..end-1 (a control's per-clip set)."""
        self.model.eval()
        device = next(self.model.parameters()).device
        t = frames.shape[0]
        window = t if self.window is None else self.window
        starts = window_starts(t, window, self.overlap)
        taxonomy = {}  # TMT-VIS chooses its taxonomy set among the target dataset's categories
        if getattr(self.model, "tcm", None) is not None:
            taxonomy = {"set_ids": set_ids, "candidates": class_mask(classes, self.model.num_classes, device)}
        prob_sum, prev_emb = None, None
        done: list[torch.Tensor] = []  # finished frames, each (Q, h, w) float16
        pending: dict[int, tuple[torch.Tensor, int]] = {}  # frame -> (mask logit sum, count)
        for w, s in enumerate(starts):
            e = min(s + window, t)
            if taxonomy and callable(set_ids):
                taxonomy["set_ids"] = set_ids(s, e)
            out = self.model(frames[None, s:e].to(device), **taxonomy)
            next_start = starts[w + 1] if w + 1 < len(starts) else t
            with no_autocast():
                prob_sum, prev_emb = self._accumulate(out, s, e, classes, prob_sum, prev_emb, pending)
                for f in sorted(k for k in pending if k < next_start):  # frames no later window covers
                    acc, n = pending.pop(f)
                    done.append((acc / n).half())
        with no_autocast():
            return prob_sum / len(starts), torch.stack(done, dim=1)

    @staticmethod
    def _accumulate(out: dict, s: int, e: int, classes: torch.Tensor, prob_sum: torch.Tensor | None,
                    prev_emb: torch.Tensor | None, pending: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """Link one window's queries to the tracks, add its class probs, add its mask logits to `pending`."""
        logits, masks, emb = out["pred_logits"][0].float(), out["pred_masks"][0].float(), out["pred_embeds"][0].float()
        if prev_emb is not None:
            perm = link(prev_emb, emb).to(logits.device)
            logits, masks, emb = logits[perm], masks[perm], emb[perm]
        sliced = torch.cat([logits[:, classes.to(logits.device)], logits[:, -1:]], dim=1)
        probs = sliced.softmax(-1)[:, :-1].cpu()  # (Q, Cd)
        prob_sum = probs if prob_sum is None else prob_sum + probs
        masks = masks.cpu()  # (Q, Tw, h, w)
        for i, f in enumerate(range(s, e)):
            acc, n = pending.get(f, (0.0, 0))
            pending[f] = (acc + masks[:, i], n + 1)
        return prob_sum, emb

    @torch.no_grad()
    def predict(self, frames: torch.Tensor, orig_size: tuple[int, int], dataset_classes: list[int],
                to_dataset_id: dict[int, int], set_ids: SetIds = None) -> list[dict]:
        """frames (T, 3, H, W) uint8 or 0..1 float at model input size -> [{category_id, score, segmentations}],
        segmentations one compressed RLE (str counts) or None per frame, at orig_size (h, w); sorted by score."""
        classes = torch.as_tensor(list(dataset_classes), dtype=torch.long)
        was_training = self.model.training
        try:
            probs, masks = self.run_windows(frames, classes, set_ids)  # (Q, Cd), (Q, T, h, w)
        finally:
            self.model.train(was_training)  # validation inside a training loop leaves the mode as it was
        with no_autocast():
            return self._postprocess(probs, masks, classes, tuple(frames.shape[-2:]), orig_size, to_dataset_id)

    def _postprocess(self, probs: torch.Tensor, masks: torch.Tensor, classes: torch.Tensor, in_size: tuple[int, int],
                     orig_size: tuple[int, int], to_dataset_id: dict[int, int]) -> list[dict]:
        q, cd = probs.shape
        k = min(self.topk, q * cd)
        top_scores, flat = probs.flatten().topk(k)  # ties resolved by torch.topk
        queries, cats = flat // cd, flat % cd
        cache: dict[int, tuple[list, float]] = {}
        results = []
        for prob, qi, ci in zip(top_scores.tolist(), queries.tolist(), cats.tolist()):
            if qi not in cache:
                cache[qi] = self._track(masks[qi], in_size, orig_size)
            rles, mask_score = cache[qi]
            results.append({"category_id": int(to_dataset_id[int(classes[ci])]), "score": float(prob * mask_score),
                            "segmentations": rles})
        return sorted(results, key=lambda r: -r["score"])  # stable: ties keep the class-probability order

    def _track(self, logits: torch.Tensor, in_size: tuple[int, int], orig_size: tuple[int, int]
               ) -> tuple[list[dict | None], float]:
        """One query's mask logits (T, h, w) -> per-frame RLEs at orig_size and its mean prob inside the mask."""
        rles, prob_in, area = [], 0.0, 0
        for s in range(0, logits.shape[0], self.frame_chunk):
            x = logits[s:s + self.frame_chunk, None].float()  # (t, 1, h, w)
            x = F.interpolate(x, size=in_size, mode="bilinear", align_corners=False)
            x = F.interpolate(x, size=tuple(orig_size), mode="bilinear", align_corners=False)[:, 0].sigmoid()
            binary = x > 0.5
            prob_in += float((x * binary).sum())
            area += int(binary.sum())
            rles.extend(encode_nonempty(b) for b in binary.numpy())
        return rles, prob_in / area if area else 0.0
