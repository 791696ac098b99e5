"""Intra-scene and inter-scene correlation transformers (paper §3.2, Eq. 3 and Eq. 7).

Both are the same stack of standard pre-norm ViT blocks (three by default, width = the CLIP
embedding width) over the features of the points sampled from each scene. They differ only in who
may attend to whom, expressed as a boolean attention mask over the concatenated samples of the
batch (``attention_mask``):

- ``scope="intra"``: a point attends only to points of its own scene (block-diagonal mask), Eq. 3;
- ``scope="inter"``: every point attends to every point of every scene of the batch, Eq. 7.

No positional encoding: the tokens are point features, and the attention weights w_mn of Eq. 3
should depend on feature similarity only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def attention_mask(scene: Tensor, scope: str) -> Tensor | None:
    """Who may attend to whom. scene: (L,) long scene index of each token.

    Returns (L, L) bool, True = may attend (``scope="intra"``: same scene only), or None for
    ``scope="inter"`` (everyone attends to everyone; no mask lets the fused attention kernels run)."""
    if scope == "inter":
        return None
    if scope == "intra":
        return scene[:, None] == scene[None, :]
    raise ValueError(f"scope must be 'intra' or 'inter', got {scope!r}")


class Attention(nn.Module):
    """Multi-head self-attention: w_mn = softmax_n(q_m·k_n/√d_h), output Σ_n w_mn v_n, projected."""

    def __init__(self, width: int, heads: int, init: str = "random") -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} is not divisible by heads {heads}")
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        if init == "similarity":
            # W_q = W_k = I, no bias: w_mn starts as softmax_n(x_m·x_n / √d_h) over each head's
            # channels, the feature similarity the paper's correlations stand for (v stays random)
            with torch.no_grad():
                self.qkv.weight[: 2 * width] = torch.cat([torch.eye(width), torch.eye(width)])
                self.qkv.bias[: 2 * width] = 0.0
        elif init != "random":
            raise ValueError(f"init must be 'random' or 'similarity', got {init!r}")

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        L, D = x.shape  # tokens, width
        q, k, v = self.qkv(x).view(L, 3, self.heads, D // self.heads).permute(1, 2, 0, 3)  # each (H, L, D/H)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (H, L, D/H)
        return self.proj(y.transpose(0, 1).reshape(L, D))

    def weights(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """The attention weights w_mn, (H, L, L): for inspection and tests."""
        L, D = x.shape
        q, k, _ = self.qkv(x).view(L, 3, self.heads, D // self.heads).permute(1, 2, 0, 3)
        s = q @ k.transpose(-1, -2) / (D // self.heads) ** 0.5
        if mask is not None:
            s = s.masked_fill(~mask, float("-inf"))
        return s.softmax(-1)


class Block(nn.Module):
    """Pre-norm transformer block: x + Attn(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, width: int, heads: int, mlp_ratio: float = 4.0, attn_init: str = "random") -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = Attention(width, heads, attn_init)
        self.ln_2 = nn.LayerNorm(width)
        hidden = int(width * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, width))

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        x = x + self.attn(self.ln_1(x), mask)
        return x + self.mlp(self.ln_2(x))


class CorrelationTransformer(nn.Module):
    """A stack of pre-norm blocks over the sampled point features of a batch.

    forward(features (L, d), scene (L,) long) → (L, d) aggregated features f̂. The residual form
    keeps f̂_m = f_m + Σ_n w_mn v_n + … (Eq. 3), so the output lives in the same space as the
    text embeddings and L̂_ce can score it with them. ``attn_init="similarity"`` starts every
    block's queries and keys as the identity, so attention starts as feature similarity;
    ``"random"`` is PyTorch's default initialisation.
    """

    def __init__(self, width: int = 512, layers: int = 3, heads: int = 8, mlp_ratio: float = 4.0,
                 scope: str = "intra", attn_init: str = "random") -> None:
        super().__init__()
        attention_mask(torch.zeros(1, dtype=torch.long), scope)  # validates scope
        self.scope = scope
        self.blocks = nn.ModuleList(Block(width, heads, mlp_ratio, attn_init) for _ in range(layers))

    def forward(self, features: Tensor, scene: Tensor) -> Tensor:
        mask = attention_mask(scene, self.scope)
        x = features
        for block in self.blocks:
            x = block(x, mask)
        return x
