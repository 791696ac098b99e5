"""SCLIP, ClearCLIP and NACLIP last blocks (and MaskCLIP's) against a token-by-token reference."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from hiclr.errors import HiclrError
from hiclr.vlm.dense import DENSE_MODES, interpolate_pos_embed_offset, neighbourhood_bias
from hiclr.vlm.maskclip import MaskCLIP, interpolate_pos_embed

SIGMA = 5.0  # NACLIP's gaussian_std


# ------------------------------------------------------------------ slow token-by-token reference
def _ln(x: torch.Tensor, ln: torch.nn.LayerNorm) -> torch.Tensor:
    mu = x.mean()
    return (x - mu) / math.sqrt(((x - mu) ** 2).mean() + ln.eps) * ln.weight + ln.bias


def _mlp(x: torch.Tensor, block: torch.nn.Module) -> torch.Tensor:
    h = block.mlp.c_fc.weight @ x + block.mlp.c_fc.bias
    h = 0.5 * h * (1.0 + torch.erf(h / math.sqrt(2.0)))  # exact GELU
    return block.mlp.c_proj.weight @ h + block.mlp.c_proj.bias


def reference(model: torch.nn.Module, image: torch.Tensor, pos: torch.Tensor, mode: str) -> torch.Tensor:
    """Unit features (h·w, D) of one uint8 (H, W, 3) frame, from the raw weights, one token at a time."""
    visual = model.visual
    p = visual.patch_size[0]
    mean = torch.tensor([0.48145466, 0.4578275, 0.40821073])
    std = torch.tensor([0.26862954, 0.26130258, 0.27577711])
    img = (image.float() / 255.0 - mean) / std
    gh, gw = image.shape[0] // p, image.shape[1] // p
    width = visual.conv1.weight.shape[0]
    kernel = visual.conv1.weight.reshape(width, 3, p * p)
    x = [visual.class_embedding + pos[0]]
    coords = [None]  # grid position of every token; None for the class token
    for i in range(gh):
        for j in range(gw):
            patch = img[i * p : (i + 1) * p, j * p : (j + 1) * p].permute(2, 0, 1).reshape(3, p * p)
            x.append((kernel * patch).sum(dim=(1, 2)) + pos[1 + i * gw + j])
            coords.append((i, j))
    x = [_ln(t, visual.ln_pre) for t in x]
    blocks = list(visual.transformer.resblocks)
    for bi, block in enumerate(blocks):
        heads = block.attn.num_heads
        hd = width // heads
        wq, wk, wv = block.attn.in_proj_weight.split(width)
        bq, bk, bv = block.attn.in_proj_bias.split(width)
        ys = [_ln(t, block.ln_1) for t in x]
        Q = torch.stack([wq @ y + bq for y in ys])  # (L, W)
        K = torch.stack([wk @ y + bk for y in ys])
        V = torch.stack([wv @ y + bv for y in ys])
        last = bi == len(blocks) - 1
        new_x = []
        for n in range(len(x)):
            if last and mode == "maskclip":  # the token's own value, residual, MLP
                z = x[n] + block.attn.out_proj.weight @ V[n] + block.attn.out_proj.bias
                new_x.append(z + _mlp(_ln(z, block.ln_2), block))
                continue
            out = torch.zeros(width)
            for h in range(heads):
                s = slice(h * hd, (h + 1) * hd)
                scale = 1.0 / math.sqrt(hd)
                if not last:
                    a = torch.softmax(K[:, s] @ Q[n, s] * scale, dim=0)
                elif mode == "sclip":
                    a = torch.softmax(Q[:, s] @ Q[n, s] * scale, 0) + torch.softmax(
                        K[:, s] @ K[n, s] * scale, 0
                    )
                elif mode == "clearclip":
                    a = torch.softmax(Q[:, s] @ Q[n, s] * scale, dim=0)
                else:  # naclip: key-key logits plus a Gaussian of the grid distance, none for the class token
                    bias = torch.tensor(
                        [
                            0.0
                            if coords[n] is None or c is None
                            else math.exp(
                                -((coords[n][0] - c[0]) ** 2 + (coords[n][1] - c[1]) ** 2) / (2 * SIGMA**2)
                            )
                            for c in coords
                        ]
                    )
                    a = torch.softmax(K[:, s] @ K[n, s] * scale + bias, dim=0)
                out[s] = a @ V[:, s]
            attn = block.attn.out_proj.weight @ out + block.attn.out_proj.bias
            if last and mode in ("clearclip", "naclip"):  # no residual, no MLP
                new_x.append(attn)
            else:
                z = x[n] + attn
                new_x.append(z + _mlp(_ln(z, block.ln_2), block))
        x = new_x
    feats = torch.stack([_ln(t, visual.ln_post) @ visual.proj for t in x[1:]])
    return F.normalize(feats, dim=-1)


def _image(size: tuple[int, int], seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (1, *size, 3), dtype=torch.uint8, generator=g)


def _features(model: torch.nn.Module, image: torch.Tensor, mode: str) -> torch.Tensor:
    clip = MaskCLIP(model, "tiny", "random:t", dense=mode)
    return clip.dense_features(image)[0].flatten(1).T  # (h·w, D), row-major


@pytest.mark.parametrize("mode", DENSE_MODES)
def test_dense_features_match_token_by_token_reference(tiny_model, mode):
    image = _image((64, 96), seed=2)  # a 4×6 grid: positional embedding resized
    pe = tiny_model.visual.positional_embedding.detach()
    # MaskCLIP resizes by size; SCLIP, ClearCLIP and NACLIP use DINO's +0.1 scale factor (tested below)
    resize = interpolate_pos_embed if mode == "maskclip" else interpolate_pos_embed_offset
    with torch.no_grad():
        ref = reference(tiny_model, image[0], resize(pe, (14, 14), (4, 6)), mode)
        got = _features(tiny_model, image, mode)
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)


def test_modes_differ_from_each_other(tiny_model, frames):
    feats = {m: _features(tiny_model, frames[:1], m) for m in DENSE_MODES}
    for a in DENSE_MODES:
        for b in DENSE_MODES:
            if a < b:
                assert (feats[a] - feats[b]).abs().max() > 1e-3, (a, b)


# ------------------------------------------------------------------------ properties, one per mode
def _perturbed(factory, what: str):
    """A tiny model whose last block's ``what`` weights are replaced by other random values."""
    model = factory(0)
    block = model.visual.transformer.resblocks[-1]
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        W = block.attn.in_proj_weight.shape[1]
        if what == "mlp":
            for p in (*block.mlp.parameters(), block.ln_2.weight, block.ln_2.bias):
                p.copy_(torch.randn(p.shape, generator=g))
        elif what in ("q", "k"):
            rows = slice(0, W) if what == "q" else slice(W, 2 * W)
            block.attn.in_proj_weight[rows] = torch.randn(W, W, generator=g) * 0.3
            block.attn.in_proj_bias[rows] = torch.randn(W, generator=g)
        elif what == "swap_qk":
            w, b = block.attn.in_proj_weight, block.attn.in_proj_bias
            w[: 2 * W] = torch.cat([w[W : 2 * W].clone(), w[:W].clone()])
            b[: 2 * W] = torch.cat([b[W : 2 * W].clone(), b[:W].clone()])
    return model


def _changes(tiny_model, tiny_factory, frames, mode: str, what: str) -> float:
    with torch.no_grad():
        a = _features(tiny_model, frames[:1], mode)
        b = _features(_perturbed(tiny_factory, what), frames[:1], mode)
    return float((a - b).abs().max())


def test_clearclip_and_naclip_ignore_the_mlp_sclip_and_maskclip_keep_it(tiny_model, tiny_factory, frames):
    assert _changes(tiny_model, tiny_factory, frames, "clearclip", "mlp") < 1e-6
    assert _changes(tiny_model, tiny_factory, frames, "naclip", "mlp") < 1e-6
    assert _changes(tiny_model, tiny_factory, frames, "sclip", "mlp") > 1e-2
    assert _changes(tiny_model, tiny_factory, frames, "maskclip", "mlp") > 1e-2


def test_which_projection_each_mode_reads(tiny_model, tiny_factory, frames):
    # ClearCLIP: q·qᵀ only, keys unused. NACLIP: k·kᵀ only, queries unused. MaskCLIP: neither.
    assert _changes(tiny_model, tiny_factory, frames, "clearclip", "k") < 1e-6
    assert _changes(tiny_model, tiny_factory, frames, "clearclip", "q") > 1e-3
    assert _changes(tiny_model, tiny_factory, frames, "naclip", "q") < 1e-6
    assert _changes(tiny_model, tiny_factory, frames, "naclip", "k") > 1e-3
    assert _changes(tiny_model, tiny_factory, frames, "maskclip", "q") < 1e-6
    assert _changes(tiny_model, tiny_factory, frames, "maskclip", "k") < 1e-6


def test_sclip_is_symmetric_in_queries_and_keys(tiny_model, tiny_factory, frames):
    """softmax(q qᵀ s) + softmax(k kᵀ s) does not change when W_q and W_k trade places."""
    assert _changes(tiny_model, tiny_factory, frames, "sclip", "swap_qk") < 1e-5
    assert _changes(tiny_model, tiny_factory, frames, "sclip", "q") > 1e-3
    assert _changes(tiny_model, tiny_factory, frames, "clearclip", "swap_qk") > 1e-3  # q·qᵀ alone is not


def test_naclip_bias_by_hand():
    omega = neighbourhood_bias((3, 4), sigma=SIGMA)  # 1 class token + 12 patches
    assert omega.shape == (13, 13)
    assert torch.all(omega[0] == 0) and torch.all(omega[:, 0] == 0)  # the class token gets none
    patches = omega[1:, 1:]
    torch.testing.assert_close(patches, patches.T)
    assert torch.all(patches.diagonal() == 1.0)  # exp(0): maximal on the patch itself
    # patch (1, 1) is token 1 + 1·4 + 1 = 6; its neighbours by hand
    row = omega[6]
    assert row.argmax() == 6
    assert row[6 + 1] == pytest.approx(math.exp(-1 / 50))  # (1, 2): distance 1
    assert row[6 + 4 + 1] == pytest.approx(math.exp(-2 / 50))  # (2, 2): distance √2
    assert row[1 + 3] == pytest.approx(math.exp(-(1 + 4) / 50))  # (0, 3): distance √5
    # strictly falling with grid distance, from every patch
    r, c = torch.meshgrid(torch.arange(3), torch.arange(4), indexing="ij")
    d2 = (
        (r.flatten()[:, None] - r.flatten()[None]) ** 2 + (c.flatten()[:, None] - c.flatten()[None]) ** 2
    ).float()
    for p in range(12):
        order = torch.argsort(d2[p])
        vals = patches[p][order]
        dist = d2[p][order]
        assert torch.all((vals[1:] < vals[:-1]) | (dist[1:] == dist[:-1]))


def _cubic_1d(f: torch.Tensor, x: float, a: float = -0.75) -> float:
    """PyTorch's bicubic (Keys kernel, a = -0.75, borders clamped) of samples f at coordinate x."""

    def w(t: float) -> float:
        t = abs(t)
        if t <= 1:
            return (a + 2) * t**3 - (a + 3) * t**2 + 1
        return a * t**3 - 5 * a * t**2 + 8 * a * t - 4 * a if t < 2 else 0.0

    x0 = math.floor(x)
    return sum(w(x - (x0 + k)) * float(f[min(max(x0 + k, 0), len(f) - 1)]) for k in (-1, 0, 1, 2))


def test_offset_positional_resize_samples_where_dino_says():
    """A separable embedding (channel 0 varies by row, channel 1 by column) is sampled at source
    coordinate (i + 0.5)·14/(n + 0.1) − 0.5, DINO's +0.1 scale factor, not (i + 0.5)·14/n − 0.5;
    identity at the native grid; class token untouched."""
    g = torch.Generator().manual_seed(0)
    fr, fc = torch.randn(14, generator=g), torch.randn(14, generator=g)
    r, c = torch.meshgrid(torch.arange(14), torch.arange(14), indexing="ij")
    pe = torch.zeros(1 + 196, 2)
    pe[1:, 0], pe[1:, 1], pe[0] = fr[r.flatten()], fc[c.flatten()], 7.0
    out = interpolate_pos_embed_offset(pe, (14, 14), (20, 30))
    assert out.shape == (1 + 600, 2) and torch.all(out[0] == 7.0)
    grid = out[1:].reshape(20, 30, 2)
    for i in range(20):
        assert grid[i, 3, 0] == pytest.approx(_cubic_1d(fr, (i + 0.5) * 14 / 20.1 - 0.5), abs=1e-5)
    for j in range(30):
        assert grid[2, j, 1] == pytest.approx(_cubic_1d(fc, (j + 0.5) * 14 / 30.1 - 0.5), abs=1e-5)
    by_size = interpolate_pos_embed(pe, (14, 14), (20, 30))[1:].reshape(20, 30, 2)
    assert by_size[7, 3, 0] == pytest.approx(_cubic_1d(fr, 7.5 * 14 / 20 - 0.5), abs=1e-5)  # MaskCLIP's
    assert (by_size - grid).abs().max() > 1e-2
    torch.testing.assert_close(interpolate_pos_embed_offset(pe, (14, 14), (14, 14)), pe)


def test_unknown_mode_and_temperatures(tiny_model):
    with pytest.raises(HiclrError):
        MaskCLIP(tiny_model, "tiny", "random:t", dense="segclip")
    temps = {m: MaskCLIP(tiny_model, "tiny", "random:t", dense=m).temperature for m in DENSE_MODES}
    assert temps == {"maskclip": 100.0, "sclip": 40.0, "clearclip": 50.0, "naclip": 40.0}


def test_pipeline_lists_the_same_modes():
    from hiclr.pseudolabel import DENSE  # spelled out there so that importing it needs no torch

    assert DENSE == DENSE_MODES
