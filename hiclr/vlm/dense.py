"""Training-free dense CLIP: the last block of an open_clip ViT as MaskCLIP, SCLIP, ClearCLIP or NACLIP
change it (same weights, no training). :class:`hiclr.vlm.maskclip.MaskCLIP` runs the rest of the tower.

Notation, per head of width ``d``: ``y = ln_1(x)``; ``q, k, v = W_{q,k,v} y + b_{q,k,v}``;
``s = d^-1/2``; ``O(·)`` is the block's output path (heads merged, ``out_proj``). All tokens enter the
last block, the class token first; the patch tokens' outputs go through ``ln_post`` and ``@ proj``
(the class token's output is dropped there, after ``ln_post``, as all four references do).

``maskclip`` (the paper's teacher; Zhou et al., ECCV 2022; :mod:`hiclr.vlm.maskclip` docstring)
    ``z = x + O(v)``; ``z = z + mlp(ln_2(z))``. No token mixing, so the class token is dropped first.
    Positional embedding resized to the grid by size (``interpolate_pos_embed``). Softmax scale 100.

``sclip`` (Wang et al., ECCV 2024; ``wangf3014/SCLIP`` ``clip/model.py``, ``VisionTransformer.forward``
    (last-block loop ``x = x + self.custom_attn(blk.attn, blk.ln_1(x), csa=csa)``,
    ``x = x + blk.mlp(blk.ln_2(x))``, then ``ln_post(x) @ proj`` on all tokens, class token dropped in
    ``clip_segmentor.py`` ``forward_feature``) and ``custom_attn`` (``csa`` branch)):
    ``A = softmax(q qᵀ s) + softmax(k kᵀ s)`` (rows sum to 2, not renormalised), ``z = x + O(A v)``,
    ``z = z + mlp(ln_2(z))`` — residual and MLP kept. Class token takes part.
    ``clip_segmentor.py`` defaults: ``logit_scale=40`` (our softmax scale), sliding window crop 224 /
    stride 112, ``pamr_steps=0``; ``configs/cfg_voc21.py`` resizes the short side to 336.

``clearclip`` (Lan et al., ECCV 2024; ``mc-lan/ClearCLIP`` ``open_clip/transformer.py``,
    ``VisionTransformer.forward`` with ``ignore_residual=True, last_n_layers=1`` (``output +=
    self.custom_attn(blk.attn, blk.ln_1(x), model_type=model_type)``, then ``ln_post``, the ``tok``
    pool drops the class token, ``tokens @ proj``) and ``custom_attn`` (``'ClearCLIP'`` branch; its
    ``configs/base_config.py`` defaults to ``model_type='vanilla'``, which is plain CLIP attention)):
    ``A = softmax(q qᵀ s)``; ``z = O(A v)`` — no residual, no MLP. Class token takes part.
    ``clearclip_segmentor.py`` defaults: ``logit_scale=50``, crop 448 / stride 224 (short side 448
    in ``configs/cfg_voc21.py``), no PAMR.

``naclip`` (Hajimiri et al., WACV 2025; ``sinahmr/NACLIP`` ``clip/model.py`` at commit ``defb7c9``,
    ``VisionTransformer.forward`` (``arch='reduced'``: ``x = self.custom_attn(...)``, no residual,
    no MLP, then ``ln_post(x) @ proj``), ``custom_attn`` (``'naclip'`` branch), ``gaussian_window`` and
    ``get_attention_addition``; defaults from ``naclip.py``: ``gaussian_std=5``, ``pamr_steps=10``,
    ``pamr_stride=(8, 16)``, ``logit_scale=40``, crop 224 / stride 112):
    ``A = softmax(k kᵀ s + Ω)``, ``z = O(A v)``; ``Ω[p, p'] = exp(-|p - p'|² / (2σ²))`` for patches at
    grid positions p, p' (σ = 5 patches; a window of (2h-1)×(2w-1) covers every offset, so no
    truncation), ``Ω = 0`` on the class token's row and column. ``Ω`` is not multiplied by ``s``.
    PAMR (:mod:`hiclr.vlm.pamr`) is off by default here (``pseudolabel.pamr_steps``; NACLIP's 10 when on).

Positional embedding for ``sclip``, ``clearclip``, ``naclip``: all three references share DINO's
``interpolate_pos_encoding``: identity at the native grid, else bicubic (``align_corners=False``)
with ``scale_factor = (n + 0.1) / N`` per side and the scale factor used as given (NACLIP states
``recompute_scale_factor=False``; SCLIP/ClearCLIP leave PyTorch's default, which does the same) —
:func:`interpolate_pos_embed_offset`. The +0.1 shifts the sampling grid slightly from a resize by
size; we keep it because their numbers were measured with it.

Deliberate departures, all modes:

- OpenAI's weights under open_clip, not OpenAI's ``clip`` package (SCLIP, NACLIP); the tensors and
  the arithmetic are the same. Any open_clip ViT is accepted; its ``ls_1``/``ls_2`` layer scales
  (identities for CLIP ViTs) are applied where the block applies them on the kept residual path
  (``sclip``) and not on ``clearclip``/``naclip``'s bare attention output, as the references' own
  ``custom_attn`` outputs are not scaled. ``head_scale``/``ln_inner``/``ln_attn`` of open_clip's
  custom blocks are applied inside ``O``.
- Inference policy: hiclr labels each whole frame in one pass at the input-size policy of
  :class:`~hiclr.vlm.maskclip.MaskCLIP` (sides rounded to the patch size, or ``input_size``), not
  with the references' sliding windows on benchmark-resized images: ScanNet frames are 640×480
  (4:3, like the benchmarks' images) and one pass keeps the pairing cost and the code small.
  This is the one place where our numbers may differ from theirs.
- Scores: softmax with each method's own default logit scale (above); argmax labels do not depend
  on it. The references' ``prob_thd``/``area_thd`` (background thresholds for VOC/Context) are not
  applied: hiclr's classes have no background class.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "DENSE_MODES",
    "MODES",
    "NACLIP_SIGMA",
    "DenseMode",
    "block_keys",
    "clearclip_block",
    "interpolate_pos_embed_offset",
    "last_block",
    "naclip_block",
    "neighbourhood_bias",
    "sclip_block",
    "split_heads",
    "value_path_block",
]

NACLIP_SIGMA = 5.0  # patches; sinahmr/NACLIP naclip.py gaussian_std


@dataclass(frozen=True)
class DenseMode:
    """What differs between the modes outside the last block."""

    name: str
    temperature: float  # softmax scale of the method's own code (logit_scale)
    pos_embed: str  # "size": resized by size (MaskCLIP); "offset": DINO's (n + 0.1) / N scale factor
    paper: str  # where the method comes from


MODES: dict[str, DenseMode] = {
    "maskclip": DenseMode("maskclip", 100.0, "size", "Zhou et al., ECCV 2022 (chongzhou96/MaskCLIP)"),
    "sclip": DenseMode("sclip", 40.0, "offset", "Wang et al., ECCV 2024 (wangf3014/SCLIP)"),
    "clearclip": DenseMode("clearclip", 50.0, "offset", "Lan et al., ECCV 2024 (mc-lan/ClearCLIP)"),
    "naclip": DenseMode("naclip", 40.0, "offset", "Hajimiri et al., WACV 2025 (sinahmr/NACLIP)"),
}
DENSE_MODES = tuple(MODES)


# ------------------------------------------------------------------------------------- positional
def interpolate_pos_embed_offset(
    pos_embed: torch.Tensor, grid: tuple[int, int], new_grid: tuple[int, int]
) -> torch.Tensor:
    """DINO's positional-embedding resize, as SCLIP, ClearCLIP and NACLIP use it.

    Args:
        pos_embed: (1 + gh·gw, W), class token first, then the grid row-major.
        grid: (gh, gw) of ``pos_embed``; new_grid: (h, w) wanted.

    Returns:
        (1 + h·w, W) float32; the identity at ``new_grid == grid``. Otherwise bicubic with
        ``scale_factor = ((h + 0.1) / gh, (w + 0.1) / gw)`` used as given, so output pixel ``i``
        samples source row ``(i + 0.5)·gh/(h + 0.1) − 0.5`` (not ``(i + 0.5)·gh/h − 0.5``).
    """
    if tuple(new_grid) == tuple(grid):
        return pos_embed.float()
    (gh, gw), (h, w) = grid, new_grid
    cls_pe, grid_pe = pos_embed[:1].float(), pos_embed[1:].float()
    width = grid_pe.shape[-1]
    grid_pe = grid_pe.reshape(1, gh, gw, width).permute(0, 3, 1, 2)  # (1, W, gh, gw)
    grid_pe = F.interpolate(
        grid_pe,
        scale_factor=((h + 0.1) / gh, (w + 0.1) / gw),
        mode="bicubic",
        align_corners=False,
        recompute_scale_factor=False,
    )
    assert tuple(grid_pe.shape[2:]) == (h, w), grid_pe.shape
    grid_pe = grid_pe.permute(0, 2, 3, 1).reshape(-1, width)  # (h·w, W)
    return torch.cat([cls_pe, grid_pe], dim=0)


# ------------------------------------------------------------------------------------ block pieces
def _in_proj(attn: nn.Module, width: int) -> tuple[tuple[torch.Tensor, torch.Tensor | None], ...]:
    """((W_q, b_q), (W_k, b_k), (W_v, b_v)) of an ``nn.MultiheadAttention`` or open_clip ``Attention``."""
    if isinstance(attn, nn.MultiheadAttention) and not attn._qkv_same_embed_dim:
        ws = (attn.q_proj_weight, attn.k_proj_weight, attn.v_proj_weight)
    else:
        ws = tuple(attn.in_proj_weight.split(width))
    b = attn.in_proj_bias
    bs = (None, None, None) if b is None else tuple(b.split(width))
    return tuple(zip(ws, bs, strict=True))


def split_heads(block: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """q, k, v of the block's attention for tokens ``x`` (B, L, W): each (B, heads, L, W/heads)."""
    B, L, W = x.shape
    heads = block.attn.num_heads
    y = block.ln_1(x)
    out = []
    for w, b in _in_proj(block.attn, W):
        out.append(F.linear(y, w, b).view(B, L, heads, W // heads).transpose(1, 2))
    return out[0], out[1], out[2]


def attn_output(block: nn.Module, o: torch.Tensor) -> torch.Tensor:
    """``O``: per-head outputs (B, heads, L, d) or merged values (B, L, W) → the block's attention
    output before the residual (head scale, inner norm, ``out_proj``, custom-block ``ln_attn``)."""
    attn = block.attn
    if o.ndim == 4:
        head_scale = getattr(attn, "head_scale", None)
        if head_scale is not None:
            o = o * head_scale.view(1, -1, 1, 1)
        B, H, L, d = o.shape
        o = o.transpose(1, 2).reshape(B, L, H * d)
    o = getattr(attn, "ln_inner", nn.Identity())(o)
    a = attn.out_proj(o)
    return getattr(block, "ln_attn", nn.Identity())(a)


def _scale(q: torch.Tensor) -> float:
    return q.shape[-1] ** -0.5


# ------------------------------------------------------------------------------------- last blocks
def value_path_block(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """MaskCLIP: every token through ``v``, ``O``, the residual and the MLP; (B, L, W) → (B, L, W)."""
    B, L, W = x.shape
    w_v, b_v = _in_proj(block.attn, W)[2]
    head_scale = getattr(block.attn, "head_scale", None)
    v = F.linear(block.ln_1(x), w_v, b_v)
    if head_scale is not None:
        v = v.view(B, L, block.attn.num_heads, -1).transpose(1, 2)
    z = x + block.ls_1(attn_output(block, v))
    return z + block.ls_2(block.mlp(block.ln_2(z)))


def sclip_block(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """SCLIP's correlative self-attention, residual and MLP kept; (B, L, W) → (B, L, W)."""
    q, k, v = split_heads(block, x)
    s = _scale(q)
    attn = torch.softmax(q @ q.transpose(-1, -2) * s, dim=-1) + torch.softmax(
        k @ k.transpose(-1, -2) * s, dim=-1
    )
    z = x + block.ls_1(attn_output(block, attn @ v))
    return z + block.ls_2(block.mlp(block.ln_2(z)))


def clearclip_block(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """ClearCLIP: query–query attention, no residual, no MLP; (B, L, W) → (B, L, W)."""
    q, _, v = split_heads(block, x)
    attn = torch.softmax(q @ q.transpose(-1, -2) * _scale(q), dim=-1)
    return attn_output(block, attn @ v)


def neighbourhood_bias(
    grid: tuple[int, int], sigma: float = NACLIP_SIGMA, with_cls: bool = True
) -> torch.Tensor:
    """NACLIP's attention addition Ω: (1 + h·w, 1 + h·w) float32 (without the class token: (h·w, h·w)).

    ``Ω[p, p'] = exp(-((r - r')² + (c - c')²) / (2σ²))`` for patches p = (r, c), p' = (r', c') of the
    row-major grid; 0 on the class token's row and column."""
    h, w = grid
    r, c = torch.meshgrid(
        torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij"
    )
    r, c = r.flatten(), c.flatten()  # (h·w,)
    d2 = (r[:, None] - r[None, :]) ** 2 + (c[:, None] - c[None, :]) ** 2
    omega = torch.exp(-d2 / (2.0 * sigma**2))
    return F.pad(omega, (1, 0, 1, 0)) if with_cls else omega


def naclip_block(
    block: nn.Module, x: torch.Tensor, grid: tuple[int, int], sigma: float = NACLIP_SIGMA
) -> torch.Tensor:
    """NACLIP: key–key attention plus the Gaussian neighbourhood bias, no residual, no MLP.

    Args:
        x: (B, 1 + h·w, W), class token first; grid: (h, w)."""
    _, k, v = split_heads(block, x)
    omega = neighbourhood_bias(grid, sigma).to(device=x.device, dtype=k.dtype)
    attn = torch.softmax(k @ k.transpose(-1, -2) * _scale(k) + omega, dim=-1)
    return attn_output(block, attn @ v)


def last_block(mode: str, block: nn.Module, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """The last block of ``mode`` on tokens (B, 1 + h·w, W) (class token first) → (B, 1 + h·w, W)."""
    if mode == "maskclip":
        return value_path_block(block, x)
    if mode == "sclip":
        return sclip_block(block, x)
    if mode == "clearclip":
        return clearclip_block(block, x)
    if mode == "naclip":
        return naclip_block(block, x, grid)
    raise ValueError(f"unknown dense mode {mode!r}; one of {DENSE_MODES}")


def block_keys(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The block's keys through ``out_proj`` (MaskCLIP's key smoothing): (B, L, W) → (B, L, W)."""
    w_k, b_k = _in_proj(block.attn, x.shape[-1])[1]
    return block.attn.out_proj(F.linear(block.ln_1(x), w_k, b_k))
