"""The intra-scene transformer never mixes scenes; the inter-scene one does; the similarity init by hand."""

from __future__ import annotations

import torch

from hiclr.nn.correlation import CorrelationTransformer, attention_mask


def test_mask_is_block_diagonal() -> None:
    scene = torch.tensor([0, 0, 1, 1, 1])
    m = attention_mask(scene, "intra")
    assert m.tolist()[0] == [True, True, False, False, False]
    assert m.tolist()[4] == [False, False, True, True, True]
    assert attention_mask(scene, "inter") is None


def _outputs(scope: str, x: torch.Tensor, scene: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    t = CorrelationTransformer(width=16, layers=3, heads=4, scope=scope).eval()
    y = t(x, scene)
    x2 = x.clone()
    x2[scene == 1] += torch.randn_like(x2[scene == 1])  # change only scene 1
    return y, t(x2, scene)


def test_intra_does_not_mix_scenes_inter_does() -> None:
    torch.manual_seed(1)
    x = torch.randn(7, 16)
    scene = torch.tensor([0, 0, 0, 1, 1, 2, 2])
    y, y2 = _outputs("intra", x, scene)
    assert torch.equal(y[scene != 1], y2[scene != 1])  # scenes 0 and 2 untouched
    assert not torch.allclose(y[scene == 1], y2[scene == 1])
    y, y2 = _outputs("inter", x, scene)
    assert not torch.allclose(y[scene == 0], y2[scene == 0], atol=1e-5)  # scene 0 sees scene 1


def test_attention_weights_zero_across_scenes() -> None:
    torch.manual_seed(0)
    t = CorrelationTransformer(width=16, layers=1, heads=2, scope="intra")
    x, scene = torch.randn(5, 16), torch.tensor([0, 0, 1, 1, 1])
    w = t.blocks[0].attn.weights(t.blocks[0].ln_1(x), attention_mask(scene, "intra"))  # (H, L, L)
    assert torch.all(w[:, :2, 2:] == 0) and torch.all(w[:, 2:, :2] == 0)
    assert torch.allclose(w.sum(-1), torch.ones(2, 5))
    w_inter = t.blocks[0].attn.weights(t.blocks[0].ln_1(x), None)
    assert torch.all(w_inter > 0)


def test_similarity_init_attends_by_feature_similarity() -> None:
    """transformer_attn_init=similarity: W_q = W_k = I, so w_mn = softmax_n(x_m,h · x_n,h / √d_h) per
    head h, by hand; on two clusters of features most of each query's mass stays in its cluster,
    where the default random init is near uniform."""
    from hiclr.nn.correlation import Attention

    torch.manual_seed(0)
    width, heads = 8, 2
    x = torch.randn(6, width)
    attn = Attention(width, heads, init="similarity")
    xh = x.view(6, heads, width // heads).transpose(0, 1)  # (H, L, d_h)
    by_hand = torch.softmax(xh @ xh.transpose(1, 2) / (width // heads) ** 0.5, dim=-1)
    torch.testing.assert_close(attn.weights(x), by_hand)
    centres = torch.randn(2, 64) * 3
    feats = torch.cat([centres[0] + 0.3 * torch.randn(10, 64), centres[1] + 0.3 * torch.randn(10, 64)])
    same = (torch.arange(20)[:, None] // 10 == torch.arange(20)[None, :] // 10).float()
    for init, low in (("similarity", 0.9), ("random", None)):
        w = Attention(64, 4, init=init).weights(torch.nn.functional.layer_norm(feats, (64,))).mean(0)
        mass = float((w * same).sum(1).mean())
        assert mass > low if low else abs(mass - 0.5) < 0.1
