"""MaskCLIP through open_clip, on a tiny random-initialised ViT (no download)."""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hiclr.errors import HiclrError
from hiclr.vlm.maskclip import TEMPERATURE, MaskCLIP, interpolate_pos_embed, load_clip
from hiclr.vlm.prompts import TEMPLATES, prompts_for
from hiclr.vlm.text import cached_text_embeddings

CLASSES = ["wall", "floor", "chair", "table"]
PAIR = ["wall", "chair"]


# ----------------------------------------------------------------------- slow token-by-token reference
def _ln(x: torch.Tensor, ln: torch.nn.LayerNorm) -> torch.Tensor:
    mu = x.mean()
    var = ((x - mu) ** 2).mean()
    return (x - mu) / math.sqrt(var + ln.eps) * ln.weight + ln.bias


def _mlp(x: torch.Tensor, block: torch.nn.Module) -> torch.Tensor:
    h = block.mlp.c_fc.weight @ x + block.mlp.c_fc.bias
    h = 0.5 * h * (1.0 + torch.erf(h / math.sqrt(2.0)))  # exact GELU (open_clip's default act)
    return block.mlp.c_proj.weight @ h + block.mlp.c_proj.bias


def reference_tokens(model: torch.nn.Module, image: np.ndarray, pos_grid: torch.Tensor) -> dict:
    """One uint8 (H, W, 3) frame through the image tower, one token at a time from the raw weights.

    Returns the MaskCLIP features of every patch (unit-norm, (h·w, D)) and, for a check of the
    reference itself, the class token's ordinary CLIP embedding (full attention in the last block).
    """
    visual = model.visual
    p = visual.patch_size[0]
    mean = torch.tensor([0.48145466, 0.4578275, 0.40821073])
    std = torch.tensor([0.26862954, 0.26130258, 0.27577711])
    img = (torch.from_numpy(image).float() / 255.0 - mean) / std  # (H, W, 3)
    gh, gw = image.shape[0] // p, image.shape[1] // p
    width = visual.conv1.weight.shape[0]
    kernel = visual.conv1.weight.reshape(width, 3, p * p)  # (W, 3, p·p)
    tokens = [visual.class_embedding + pos_grid[0]]
    for i in range(gh):
        for j in range(gw):
            patch = img[i * p : (i + 1) * p, j * p : (j + 1) * p].permute(2, 0, 1).reshape(3, p * p)
            tokens.append((kernel * patch).sum(dim=(1, 2)) + pos_grid[1 + i * gw + j])
    x = [_ln(t, visual.ln_pre) for t in tokens]
    blocks = list(visual.transformer.resblocks)
    for bi, block in enumerate(blocks):
        heads = block.attn.num_heads
        hd = width // heads
        wq, wk, wv = block.attn.in_proj_weight.split(width)
        bq, bk, bv = block.attn.in_proj_bias.split(width)
        ys = [_ln(t, block.ln_1) for t in x]
        keys = [wk @ y + bk for y in ys]
        vals = [wv @ y + bv for y in ys]
        key_mat, val_mat = torch.stack(keys), torch.stack(vals)  # (L, W)
        last = bi == len(blocks) - 1
        new_x, value_path = [], []
        for n, y in enumerate(ys):
            q = wq @ y + bq
            out = torch.zeros(width)
            for h in range(heads):  # this query against every key of head h
                s = slice(h * hd, (h + 1) * hd)
                attn = torch.softmax(key_mat[:, s] @ q[s] / math.sqrt(hd), dim=0)  # (L,)
                out[s] = attn @ val_mat[:, s]
            z = x[n] + block.attn.out_proj.weight @ out + block.attn.out_proj.bias
            new_x.append(z + _mlp(_ln(z, block.ln_2), block))
            if last:  # MaskCLIP: the token's own value replaces the attention output
                z = x[n] + block.attn.out_proj.weight @ vals[n] + block.attn.out_proj.bias
                value_path.append(z + _mlp(_ln(z, block.ln_2), block))
        x = new_x
    feats = torch.stack([_ln(t, visual.ln_post) @ visual.proj for t in value_path[1:]])
    cls_embed = _ln(x[0], visual.ln_post) @ visual.proj
    return {"feats": F.normalize(feats, dim=-1), "cls": cls_embed, "pixels": img}


@pytest.mark.parametrize("size", [(224, 224), (48, 80)])
def test_dense_features_match_token_by_token_reference(tiny_model, tiny_clip, tiny_cfg, size):
    g = torch.Generator().manual_seed(size[0])
    image = torch.randint(0, 256, (1, *size, 3), dtype=torch.uint8, generator=g)
    gh, gw = size[0] // 16, size[1] // 16
    pe = tiny_model.visual.positional_embedding.detach()
    if (gh, gw) != (14, 14):  # bicubic resize of the 14×14 grid, done here without the library helper
        grid = pe[1:].reshape(1, 14, 14, -1).permute(0, 3, 1, 2)
        grid = F.interpolate(grid, size=(gh, gw), mode="bicubic", align_corners=False)
        pe = torch.cat([pe[:1], grid.permute(0, 2, 3, 1).reshape(gh * gw, -1)])
    with torch.no_grad():
        ref = reference_tokens(tiny_model, image[0].numpy(), pe)
        got = tiny_clip.dense_features(image)  # (1, D, gh, gw)
        if size == (224, 224):  # the reference itself agrees with open_clip's own forward pass
            clip_cls = tiny_model.encode_image(ref["pixels"].permute(2, 0, 1)[None])[0]
            torch.testing.assert_close(ref["cls"], clip_cls, atol=1e-4, rtol=1e-4)
    assert got.shape == (1, tiny_cfg["embed_dim"], gh, gw)
    got_tokens = got[0].flatten(1).T  # (gh·gw, D), row-major like the reference
    torch.testing.assert_close(got_tokens, ref["feats"], atol=2e-5, rtol=1e-4)


def test_value_path_is_not_the_attention_path(tiny_model, tiny_clip, frames):
    """A patch feature depends on the other patches only through the first blocks: changing one
    patch changes the others (earlier attention), and features differ from the full-attention ones."""
    a = frames[:1].clone()
    b = a.clone()
    b[0, :16, :16] = 255 - b[0, :16, :16]  # flip patch (0, 0)
    fa, fb = tiny_clip.dense_features(a), tiny_clip.dense_features(b)
    assert not torch.allclose(fa[0, :, 0, 0], fb[0, :, 0, 0], atol=1e-3)
    assert not torch.allclose(fa[0, :, 3, 5], fb[0, :, 3, 5], atol=1e-6)  # mixed in by block 1


def test_positional_interpolation_is_identity_at_native_size(tiny_model):
    pe = tiny_model.visual.positional_embedding.detach()
    torch.testing.assert_close(interpolate_pos_embed(pe, (14, 14), (14, 14)), pe, atol=1e-6, rtol=0)
    resized = interpolate_pos_embed(pe, (14, 14), (30, 40))
    assert resized.shape == (1 + 30 * 40, pe.shape[1])
    torch.testing.assert_close(resized[0], pe[0])  # the class token's entry is kept


def test_input_size_policy(tiny_model, frames):
    clip = MaskCLIP(tiny_model, "tiny", "random:t")
    odd = torch.zeros((1, 100, 130, 3), dtype=torch.uint8)
    assert clip.dense_features(odd).shape[2:] == (6, 8)  # round(100/16), round(130/16)
    assert clip.dense_features(frames).shape[2:] == (4, 6)  # 64×96: multiples of 16, kept
    fixed = MaskCLIP(tiny_model, "tiny", "random:t", input_size=(32, 48))
    assert fixed.dense_features(frames).shape[2:] == (2, 3)
    labels, scores = fixed.label_images(frames, torch.eye(64)[:3])
    assert labels.shape == scores.shape == (2, 64, 96)  # default out_size: the frames' own size
    with pytest.raises(HiclrError, match="multiple of the patch size"):
        MaskCLIP(tiny_model, "tiny", "random:t", input_size=(30, 48))


def random_text(num_classes: int, dim: int = 64, seed: int = 0) -> torch.Tensor:
    """Unit-norm stand-ins for class embeddings (the label path does not care where they come from)."""
    return F.normalize(torch.randn(num_classes, dim, generator=torch.Generator().manual_seed(seed)), dim=1)


def test_end_to_end_labels(tiny_clip, frames):
    text = random_text(len(CLASSES))
    labels, scores = tiny_clip.label_images(frames.numpy(), text, out_size=(32, 40))
    assert labels.shape == scores.shape == (2, 32, 40)
    assert labels.dtype == torch.int64 and scores.dtype == torch.float32
    assert labels.min() >= 0 and labels.max() < len(CLASSES)
    assert (scores > 1.0 / len(CLASSES) - 1e-6).all() and (scores <= 1.0 + 1e-6).all()
    # The same thing by hand from the dense logits: upsample ×100 logits, softmax, argmax.
    logits = tiny_clip.dense_logits(frames, text)
    assert logits.shape == (2, len(CLASSES), 4, 6)
    up = F.interpolate(TEMPERATURE * logits, size=(32, 40), mode="bilinear", align_corners=False)
    prob = torch.softmax(up, dim=1)
    assert torch.equal(labels, prob.argmax(dim=1))
    torch.testing.assert_close(scores, prob.amax(dim=1))


def test_batch_size_does_not_change_results(tiny_model, frames):
    one = MaskCLIP(tiny_model, "tiny", "random:t", batch_size=1).dense_features(frames)
    two = MaskCLIP(tiny_model, "tiny", "random:t", batch_size=2).dense_features(frames)
    torch.testing.assert_close(one, two, atol=1e-5, rtol=1e-5)


def test_bf16_autocast_close_to_fp32(tiny_model, frames):
    ref = MaskCLIP(tiny_model, "tiny", "random:t").dense_features(frames)
    low = MaskCLIP(tiny_model, "tiny", "random:t", precision="bf16").dense_features(frames)
    assert low.dtype == torch.float32
    assert (ref * low).sum(dim=1).mean() > 0.97  # mean cosine between the two feature maps


def test_text_embeddings_unit_norm_order_stable_and_ensembled(tiny_model, tiny_clip, tiny_cfg):
    assert len(TEMPLATES) == 85 and len(set(TEMPLATES)) == 85 and tiny_clip.templates == TEMPLATES
    assert TEMPLATES[0] == "a bad photo of a {}." and TEMPLATES[-5] == "there is a {} in the scene."
    # A short template list keeps the text tower cheap; the ensemble rule is the same.
    short = MaskCLIP(tiny_model, "tiny", "random:t", templates=TEMPLATES[78:84])
    base = short.text_embeddings(CLASSES)
    assert base.shape == (len(CLASSES), tiny_cfg["embed_dim"]) and base.dtype == torch.float32
    torch.testing.assert_close(base.norm(dim=1), torch.ones(len(CLASSES)))
    import open_clip

    with torch.no_grad():  # by hand: each prompt normalised, averaged, normalised again
        tokens = open_clip.get_tokenizer("ViT-B-16")(prompts_for("chair", TEMPLATES[78:84]))
        each = F.normalize(tiny_model.encode_text(tokens), dim=-1)  # (6, D)
    torch.testing.assert_close(base[2], F.normalize(each.mean(0), dim=0), atol=1e-5, rtol=0)
    perm = [2, 0, 3, 1]
    permuted = short.text_embeddings([CLASSES[i] for i in perm])
    torch.testing.assert_close(permuted, base[perm], atol=1e-6, rtol=0)
    full = tiny_clip.text_embeddings(["chair"])  # the default: all 85 templates
    torch.testing.assert_close(full.norm(dim=1), torch.ones(1))
    assert not torch.allclose(full[0], base[2], atol=1e-3)  # the template list matters


def test_key_smoothing_and_prompt_denoising_by_hand(tiny_model):
    clip = MaskCLIP(tiny_model, "tiny", "random:t", key_smoothing=True)
    # Three patches, two classes. Patches 0 and 1 have the same key, patch 2 an orthogonal one.
    logits = torch.tensor([[0.010, 0.0], [0.0, 0.005], [0.0, 0.020]]).T.reshape(1, 2, 1, 3)  # unsaturated
    keys = torch.tensor([[[1.0, 0.0], [2.0, 0.0], [0.0, 1.0]]])
    probs = clip._refined_probs(logits, keys)
    p = torch.softmax(TEMPERATURE * logits, dim=1)[0, :, 0]  # (C, 3)
    torch.testing.assert_close(probs[0, :, 0, 0], (p[:, 0] + p[:, 1]) / 2)
    torch.testing.assert_close(probs[0, :, 0, 1], (p[:, 0] + p[:, 1]) / 2)
    torch.testing.assert_close(probs[0, :, 0, 2], p[:, 2])
    # Prompt denoising: class 1 never reaches 0.9 anywhere → removed; class 0 wins everywhere.
    clip = MaskCLIP(tiny_model, "tiny", "random:t", prompt_denoising=True, pd_thresh=0.9)
    logits = torch.tensor([[0.30, 0.10, 0.05], [0.00, 0.095, 0.0]]).reshape(1, 2, 1, 3)
    probs = clip._refined_probs(logits, None)
    assert probs[0, 1].max() < 1e-6 and torch.allclose(probs[0, 0], torch.ones(1, 3))


def test_refinements_run_end_to_end(tiny_model, frames):
    clip = MaskCLIP(tiny_model, "tiny", "random:t", key_smoothing=True, prompt_denoising=True, pd_thresh=0.5)
    text = random_text(len(CLASSES), seed=3)
    labels, scores = clip.label_images(frames, text)
    peak = torch.softmax(TEMPERATURE * clip.dense_logits(frames, text), dim=1).flatten(2).amax(2)  # (B, C)
    for b in range(frames.shape[0]):
        kept = set(torch.nonzero(peak[b] >= 0.5).flatten().tolist())
        if kept:  # removed classes never win
            assert set(labels[b].unique().tolist()) <= kept
    assert (scores <= 1 + 1e-5).all() and (scores > 0).all()


# ----------------------------------------------------------------------------- weights and errors
@pytest.fixture()
def registered_tiny(tmp_path, tiny_model, tiny_cfg):
    """The tiny model saved as a checkpoint file and registered as an open_clip architecture."""
    import open_clip

    cfg_dir = tmp_path / "configs"
    cfg_dir.mkdir()
    (cfg_dir / "hiclr-tiny-vit.json").write_text(json.dumps(tiny_cfg))
    open_clip.add_model_config(cfg_dir)
    ckpt = tmp_path / "tiny.pt"
    torch.save(tiny_model.state_dict(), ckpt)
    return ckpt


def test_local_checkpoint_loads(registered_tiny, tiny_clip, tiny_factory, frames):
    clip = MaskCLIP.load("hiclr-tiny-vit", weights=str(registered_tiny), device="cpu", precision="fp32")
    assert clip.weights_id.startswith("file:tiny.pt:")
    torch.testing.assert_close(clip.dense_features(frames), tiny_clip.dense_features(frames))
    loaded, original = clip.model.state_dict(), tiny_clip.model.state_dict()
    assert loaded.keys() == original.keys()
    assert all(torch.equal(loaded[k], original[k]) for k in original)  # the text tower too
    other = tiny_factory(5)
    model, wid = load_clip("hiclr-tiny-vit", None)
    again, wid_again = load_clip("hiclr-tiny-vit", None)
    assert wid.startswith("random:") and wid == wid_again  # random weights are seeded
    assert torch.equal(model.visual.proj, again.visual.proj)
    assert not torch.allclose(model.visual.proj, other.visual.proj)


def test_missing_file_and_wrong_tag_raise_with_hint(registered_tiny, tmp_path):
    missing = tmp_path / "nope" / "ViT-B-16.pt"
    with pytest.raises(HiclrError, match="does not exist") as e:
        MaskCLIP.load("hiclr-tiny-vit", weights=str(missing))
    assert str(missing) in str(e.value)
    with pytest.raises(HiclrError, match="neither an open_clip pretrained tag") as e:
        MaskCLIP.load("ViT-B-16", weights="not-a-tag")
    assert "openai" in e.value.hint and "local checkpoint" in e.value.hint
    with pytest.raises(HiclrError, match="unknown open_clip model"):
        MaskCLIP.load("ViT-Q-99", weights=None)
    bad = tmp_path / "bad.pt"
    torch.save({"visual.proj": torch.zeros(3, 3)}, bad)
    with pytest.raises(HiclrError, match="could not load CLIP checkpoint"):
        MaskCLIP.load("hiclr-tiny-vit", weights=str(bad))


def test_offline_tag_fails_fast_with_hint(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HOME", "/nonexistent-hiclr-test-cache")
    t0 = time.perf_counter()
    with pytest.raises(HiclrError, match="could not download the CLIP weights 'openai'") as e:
        MaskCLIP.load("ViT-B-16", weights="openai")
    assert time.perf_counter() - t0 < 20
    assert "HF_HUB_OFFLINE" in str(e.value) and "--clip-weights /path/to/file.pt" in e.value.hint


# ------------------------------------------------------------------------------------ text cache
def test_text_cache_writes_reuses_and_invalidates(tmp_path, tiny_model, monkeypatch):
    tiny_clip = MaskCLIP(tiny_model, "hiclr-tiny-test", "random:tiny0", templates=TEMPLATES[:4])
    first = cached_text_embeddings(tmp_path, tiny_clip, PAIR)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) == 2 and files[0].endswith(".json") and files[1].endswith(".npy")
    meta = json.loads((tmp_path / files[0]).read_text())
    assert meta["classes"] == PAIR and meta["model_name"] == "hiclr-tiny-test"
    assert meta["weights_id"] == "random:tiny0" and meta["dim"] == 64 and meta["num_templates"] == 4

    def boom(names):
        raise AssertionError("recomputed although cached")

    monkeypatch.setattr(tiny_clip, "text_embeddings", boom)
    torch.testing.assert_close(cached_text_embeddings(tmp_path, tiny_clip, PAIR), first)
    monkeypatch.undo()
    # Another class list or another weights id is another entry.
    cached_text_embeddings(tmp_path, tiny_clip, CLASSES[:1])
    tiny_clip.weights_id = "random:other"
    cached_text_embeddings(tmp_path, tiny_clip, PAIR)
    assert len(list(tmp_path.glob("*.npy"))) == 3
    assert not list(tmp_path.glob(".*tmp"))
    # A damaged array is recomputed, not trusted.
    tiny_clip.weights_id = "random:tiny0"
    npy = tmp_path / files[1]
    np.save(npy, np.zeros((2, 64), np.float32))
    again = cached_text_embeddings(tmp_path, tiny_clip, PAIR)
    torch.testing.assert_close(again, first)
    assert np.allclose(np.linalg.norm(np.load(npy), axis=1), 1.0)


def test_non_vit_image_tower_is_refused(tiny_cfg):
    import open_clip

    resnet = open_clip.CLIP(
        embed_dim=64,
        vision_cfg={"image_size": 64, "layers": [1, 1, 1, 1], "width": 16, "head_width": 16},
        text_cfg=tiny_cfg["text_cfg"],
    )
    with pytest.raises(HiclrError, match="needs an open_clip ViT image tower"):
        MaskCLIP(resnet, "tiny-rn", "random:r")
