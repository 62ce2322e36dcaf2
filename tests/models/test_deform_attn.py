import math

import torch

from tmtvis.models.deform_attn import MSDeformAttn, ms_deform_attn


def naive_ms_deform_attn(value, shapes, locations, weights):
    """Loop over every sample with explicit bilinear interpolation (pixel centres at +0.5, zeros outside)."""
    n, _, m, d = value.shape
    _, lq, _, nl, p, _ = locations.shape
    out = torch.zeros(n, lq, m, d, dtype=torch.float64)
    starts = [0]
    for h, w in shapes:
        starts.append(starts[-1] + h * w)
    for b in range(n):
        for q in range(lq):
            for head in range(m):
                for lvl, (h, w) in enumerate(shapes):
                    v = value[b, starts[lvl]:starts[lvl + 1], head].double().view(h, w, d)
                    for k in range(p):
                        x = locations[b, q, head, lvl, k, 0].item() * w - 0.5
                        y = locations[b, q, head, lvl, k, 1].item() * h - 0.5
                        x0, y0 = math.floor(x), math.floor(y)
                        sample = torch.zeros(d, dtype=torch.float64)
                        corners = ((y0, x0, (y0 + 1 - y) * (x0 + 1 - x)), (y0, x0 + 1, (y0 + 1 - y) * (x - x0)),
                                   (y0 + 1, x0, (y - y0) * (x0 + 1 - x)), (y0 + 1, x0 + 1, (y - y0) * (x - x0)))
                        for yy, xx, wt in corners:
                            if 0 <= yy < h and 0 <= xx < w:
                                sample += wt * v[yy, xx]
                        out[b, q, head] += weights[b, q, head, lvl, k].item() * sample
    return out.view(n, lq, m * d).float()


def test_grid_sample_equals_naive_loop():
    torch.manual_seed(0)
    shapes = [(3, 5), (6, 4), (7, 9)]
    n, lq, m, d, p = 2, 6, 2, 4, 3
    value = torch.randn(n, sum(h * w for h, w in shapes), m, d)
    # Some locations fall outside [0, 1] to exercise the zero padding.
    locations = torch.rand(n, lq, m, len(shapes), p, 2) * 1.3 - 0.15
    weights = torch.rand(n, lq, m, len(shapes), p).flatten(-2).softmax(-1).view(n, lq, m, len(shapes), p)
    fast = ms_deform_attn(value, shapes, locations, weights)
    slow = naive_ms_deform_attn(value, shapes, locations, weights)
    assert fast.shape == (n, lq, m * d)
    assert torch.allclose(fast, slow, atol=1e-5)


def test_module_shapes_and_gradients():
    torch.manual_seed(0)
    shapes = [(4, 4), (8, 8), (16, 16)]
    s = sum(h * w for h, w in shapes)
    attn = MSDeformAttn(32, 3, 4, 2)
    x = torch.randn(2, s, 32, requires_grad=True)
    ref = torch.rand(2, s, 3, 2)
    y = attn(x, ref, x, shapes)
    assert y.shape == (2, s, 32)
    y.square().mean().backward()
    assert attn.sampling_offsets.weight.grad.abs().sum() > 0 and x.grad.abs().sum() > 0
