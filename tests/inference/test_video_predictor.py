import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pycocotools import mask as mask_utils

from tmtvis.inference import VideoPredictor, link, window_starts
from tmtvis.models import ModelConfig, build_model

torch.set_num_threads(2)
Q, C, H = 6, 5, 32


class ShuffledTracksModel(torch.nn.Module):
    """A stand-in model whose tracks are fixed functions of the frame index (read from pixel [0, 0, 0]), returned
    in a fresh random query order on every call: windowed inference must undo the shuffling by linking."""

    def __init__(self, shuffle: bool) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.embeds = torch.randn(Q, 16, generator=g)
        self.logits = torch.randn(Q, C + 1, generator=g) * 2
        self.shuffle = shuffle
        self.dummy = torch.nn.Parameter(torch.zeros(()))

    def masks(self, t: torch.Tensor) -> torch.Tensor:
        yy, xx = torch.meshgrid(torch.arange(H // 4), torch.arange(H // 4), indexing="ij")
        out = torch.empty(Q, len(t), H // 4, H // 4)
        for q in range(Q):
            for i, f in enumerate(t.tolist()):
                cy, cx = (q * 3 + f) % 8, (q * 5 + 2 * f) % 8
                out[q, i] = 4.0 - ((yy - cy) ** 2 + (xx - cx) ** 2).float()
        return out

    def forward(self, frames):
        t = (frames[0, :, 0, 0, 0] * 1000).round().long()
        perm = torch.randperm(Q) if self.shuffle else torch.arange(Q)
        noise = 0.05 * torch.randn(Q, 16)  # windows never see identical embeddings
        return {"pred_logits": self.logits[perm][None], "pred_masks": self.masks(t)[perm][None],
                "pred_embeds": (self.embeds + noise)[perm][None]}


def frame_index_video(t: int) -> torch.Tensor:
    frames = torch.rand(t, 3, H, H)
    frames[:, 0, 0, 0] = torch.arange(t) / 1000
    return frames


def canonical(results):
    return sorted((r["category_id"], round(r["score"], 5), tuple(str(s) for s in r["segmentations"])) for r in results)


def test_window_starts_cover_the_video():
    assert window_starts(5, 10, 2) == [0]
    assert window_starts(10, 4, 1) == [0, 3, 6]
    assert window_starts(11, 4, 1) == [0, 3, 6, 7]
    for t in range(1, 40):
        starts = window_starts(t, 6, 2)
        assert starts[0] == 0 and min(starts[-1] + 6, t) == t
        assert all(b - a <= 4 for a, b in zip(starts, starts[1:]))


def test_link_recovers_a_permutation():
    prev = torch.randn(8, 32)
    perm = torch.randperm(8)
    cur = torch.empty_like(prev)
    cur[perm] = prev + 0.01 * torch.randn(8, 32)
    assert torch.equal(link(prev, cur), perm)


def test_windowed_linking_equals_whole_video():
    torch.manual_seed(0)
    frames = frame_index_video(23)
    classes, to_ds = [0, 2, 3], {0: 10, 2: 12, 3: 13}
    whole = VideoPredictor(ShuffledTracksModel(shuffle=False), window=None, topk=8)
    windowed = VideoPredictor(ShuffledTracksModel(shuffle=True), window=6, overlap=2, topk=8)
    a = whole.predict(frames, (40, 48), classes, to_ds)
    b = windowed.predict(frames, (40, 48), classes, to_ds)
    assert len(a) == 8 and canonical(a) == canonical(b)
    # Without linking the shuffled windows would mix tracks: check the test can tell.
    unlinked = VideoPredictor(ShuffledTracksModel(shuffle=True), window=6, overlap=2, topk=8)
    import tmtvis.inference.video_predictor as vp
    orig = vp.link
    vp.link = lambda prev, cur: torch.arange(cur.shape[0])
    try:
        assert canonical(unlinked.predict(frames, (40, 48), classes, to_ds)) != canonical(a)
    finally:
        vp.link = orig


def tiny_model():
    torch.manual_seed(0)
    bank = F.normalize(torch.randn(8, 32), dim=-1)
    return build_model(ModelConfig(), bank)


def test_one_window_covering_the_video_equals_whole_video_inference():
    model = tiny_model()
    frames = (torch.rand(5, 3, 64, 64) * 255).to(torch.uint8)
    args = (frames, (48, 80), [1, 3, 4, 6], {1: 2, 3: 4, 4: 5, 6: 7})
    whole = VideoPredictor(model, window=None).predict(*args)
    same = VideoPredictor(model, window=5, overlap=2).predict(*args)
    bigger = VideoPredictor(model, window=8, overlap=3).predict(*args)
    assert canonical(whole) == canonical(same) == canonical(bigger)


def test_output_format_and_scores():
    model = tiny_model().train()
    frames = torch.rand(4, 3, 64, 64)
    results = VideoPredictor(model, topk=10).predict(frames, (50, 70), [0, 5, 7], {0: 1, 5: 6, 7: 8})
    assert len(results) == 10 and model.training  # the caller's mode is restored
    assert [r["score"] for r in results] == sorted((r["score"] for r in results), reverse=True)
    for r in results:
        assert set(r) == {"category_id", "score", "segmentations"} and r["category_id"] in (1, 6, 8)
        assert 0.0 <= r["score"] <= 1.0 and len(r["segmentations"]) == 4
        for seg in r["segmentations"]:
            if seg is not None:
                assert seg["size"] == [50, 70] and isinstance(seg["counts"], str)
                assert mask_utils.decode({"size": seg["size"], "counts": seg["counts"].encode()}).any()


def test_score_is_class_prob_times_mask_prob_inside_the_mask():
    model = ShuffledTracksModel(shuffle=False)
    frames = frame_index_video(3)
    res = VideoPredictor(model, topk=1).predict(frames, (H, H), [1, 2], {1: 1, 2: 2})[0]
    probs = torch.cat([model.logits[:, [1, 2]], model.logits[:, -1:]], 1).softmax(-1)[:, :-1]
    best = probs.flatten().argmax().item()
    q, c = divmod(best, 2)
    up = F.interpolate(model.masks(torch.arange(3))[q][:, None], size=(H, H), mode="bilinear")
    up = F.interpolate(up, size=(H, H), mode="bilinear").sigmoid()[:, 0]
    inside = up > 0.5
    expected = probs[q, c] * up[inside].mean()
    assert res["category_id"] == [1, 2][c]
    assert res["score"] == pytest.approx(expected.item(), rel=1e-5)
    decoded = [mask_utils.decode({"size": s["size"], "counts": s["counts"].encode()}) for s in res["segmentations"]]
    assert np.array_equal(np.stack(decoded).astype(bool), inside.numpy())


def test_long_video_in_windows_runs():
    model = tiny_model()
    frames = (torch.rand(40, 3, 64, 64) * 255).to(torch.uint8)
    res = VideoPredictor(model, window=8, overlap=2, topk=5).predict(frames, (64, 64), [0, 1], {0: 1, 1: 2})
    assert len(res) == 5 and all(len(r["segmentations"]) == 40 for r in res)
