"""MaskCLIP dense labels from any open_clip ViT (Zhou et al., ECCV 2022, "Extract Free Dense Labels
from CLIP"), as used by CLIP2Scene and HICL for their 3D pseudo-labels.

The recipe, checked against MaskCLIP's public code (``mmseg/models/backbones/vit.py`` with
``return_qkv=True, final_norm=True`` and ``decode_heads/maskclip_head.py``):

1. Image → CLIP's mean/std normalisation → patch embedding (``conv1``) → class token prepended →
   positional embedding, its patch grid resized bicubically (``align_corners=False``, as MaskCLIP)
   to the image's patch grid → ``ln_pre`` → all transformer blocks but the last, unchanged.
2. Last block, for each patch token ``x`` on its own (query–key attention skipped):
   ``y = ln_1(x)``; ``v = W_v y + b_v``; ``a = out_proj(v)``; ``z = x + ls_1(a)``;
   ``z = z + ls_2(mlp(ln_2(z)))`` — the value replaces the attention output and the block's
   residual and MLP path are kept, exactly as MaskCLIP's ``v += x; v = ffn(norm2(v), identity=v)``.
   (open_clip's ``ls_1``/``ls_2`` layer scales are identities for CLIP ViTs.)
3. ``ln_post`` → ``@ proj`` → L2-normalise: one D-dim (512 for ViT-B/16) feature per 16×16 patch.
4. Logits = feature · class text embedding (cosine, in [-1, 1]); the softmax uses CLIP's
   temperature 100 (``TEMPERATURE``), as MaskCLIP does.

``dense=`` swaps step 2 for SCLIP's, ClearCLIP's or NACLIP's last block (and, with them, their
positional-embedding resize and softmax scale): :mod:`hiclr.vlm.dense` documents each against its
reference code. ``pamr_steps=`` adds NACLIP's PAMR refinement on the output grid (:mod:`hiclr.vlm.pamr`).

Optional refinements (off by default; PROTOCOL.md thresholds), applied on the patch grid:

- prompt denoising (``pd_thresh`` 0.5): per image, a class whose softmax probability stays below
  the threshold on every patch is removed (its logit set to −100, MaskCLIP's value);
- key smoothing (``ks_thresh`` 1.0): the class probabilities of every patch whose top probability
  is below the threshold are replaced by an average over all patches weighted by the cosine
  similarity of their last-block keys (MaskCLIP passes the keys through ``out_proj`` too, and so do
  we). Two deliberate departures, because MaskCLIP's code reads as a slip: keys are normalised per
  token (MaskCLIP's ``F.normalize(k, p=2)`` on an (N, L, C) tensor normalises over tokens), and the
  weights are clamped at 0 and divided by their row sum so the result stays a distribution. The
  row division leaves MaskCLIP's argmax unchanged wherever no key similarity is negative.

Input size policy: frames are fed at their own size with each side rounded to the nearest multiple
of the patch size (a 640×480 ScanNet depth-grid frame → 640×480, a 40×30 patch grid), or resized to
``input_size=(H, W)`` when given (e.g. ``(240, 320)``: 4× cheaper, coarser labels). Resizing is
bicubic with antialiasing on 0–255 values, like CLIP's own preprocessing (which resizes with PIL
bicubic); there is no centre crop, every pixel is labelled.

Precision: weights stay float32; ``precision="fp16"|"bf16"`` runs the image and text towers under
``torch.autocast`` (fp16 is meant for GPUs; bf16 also speeds up recent CPUs). Outputs are float32.

Weights: an open_clip pretrained tag (``"openai"``, downloaded by open_clip where there is internet),
a local checkpoint file, or ``None`` for random weights (benchmarks, tests). A local copy of the
OpenAI weights needs the ``-quickgelu`` model name (``ViT-B-16-quickgelu``), because OpenAI's
models use QuickGELU; with the ``openai`` tag this is applied automatically.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hiclr.errors import HiclrError, MissingDependencyError
from hiclr.vlm.dense import MODES, block_keys, interpolate_pos_embed_offset, last_block, value_path_block
from hiclr.vlm.pamr import PAMR_DILATIONS, pamr
from hiclr.vlm.prompts import TEMPLATES, prompts_for
from hiclr.vlm.text import cached_text_embeddings

__all__ = [
    "KS_THRESH",
    "PD_THRESH",
    "PRECISIONS",
    "TEMPERATURE",
    "MaskCLIP",
    "cached_text_embeddings",
    "interpolate_pos_embed",
    "load_clip",
]

TEMPERATURE = 100.0  # CLIP's logit scale; MaskCLIP's softmax(100 · cosine)
KS_THRESH = 1.0  # key smoothing threshold when enabled (PROTOCOL.md)
PD_THRESH = 0.5  # prompt denoising threshold when enabled (PROTOCOL.md)
PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
_REMOVED_LOGIT = -100.0  # MaskCLIP's logit for a class removed by prompt denoising
_CKPT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".npz", ".ckpt")
_HINT_LOCAL = (
    "on a machine with internet, open_clip.create_model('{m}', pretrained='{t}') downloads the weights "
    "into ~/.cache/huggingface (copy that cache here, or set HF_HOME to it), or pass a local checkpoint "
    "file as the weights (--clip-weights /path/to/file.pt){q}"
)
_HINT_QUICKGELU = "; these weights use QuickGELU, so with a local file name the model '{m}-quickgelu'"


def _open_clip() -> Any:
    try:
        import open_clip
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise MissingDependencyError("open_clip_torch", "clip", "MaskCLIP pseudo-labelling") from e
    return open_clip


# ----------------------------------------------------------------------------------------- loading
def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


RANDOM_WEIGHTS = ("", "random", "none")  # weights values that mean the seeded random initialisation


def _params_digest(model: nn.Module) -> str:
    """A digest of a few parameter tensors: tells two random initialisations apart."""
    h = hashlib.sha256()
    for name, p in model.named_parameters():
        if name in ("visual.proj", "text_projection", "token_embedding.weight", "visual.class_embedding"):
            h.update(p.detach().float().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def load_clip(
    model_name: str, weights: str | None, device: str | torch.device = "cpu"
) -> tuple[nn.Module, str]:
    """Build an open_clip model in eval mode and say which weights it holds.

    Args:
        model_name: an open_clip architecture (``open_clip.list_models()``), e.g. ``"ViT-B-16"``.
        weights: an open_clip pretrained tag for that model (``"openai"``), a checkpoint file path,
            or ``None`` (also ``"random"``/``"none"``, as given on a command line) for random
            weights (seeded: the same in every process).
        device: where the model goes.

    Returns:
        ``(model, weights_id)``; ``weights_id`` is ``"tag:<tag>"``, ``"file:<name>:<sha256[:16]>"``
        or ``"random:<digest>"``, stable for the same weights (used to key the text cache).

    Raises:
        HiclrError: unknown model, unknown tag, missing or unreadable file, download failure
            (no internet, or ``HF_HUB_OFFLINE=1`` with nothing cached) — each with a hint.
    """
    open_clip = _open_clip()
    if model_name not in open_clip.list_models():
        vits = [m for m in open_clip.list_models() if m.startswith(("ViT-B", "ViT-L"))]
        raise HiclrError(
            f"unknown open_clip model '{model_name}'",
            f"use an open_clip architecture name such as {', '.join(vits[:6])} (see open_clip.list_models())",
        )
    kwargs: dict[str, Any] = {"device": device}
    if weights is None or weights.strip().lower() in RANDOM_WEIGHTS:
        with torch.random.fork_rng(devices=[]):  # seeded, so every process gets the same random model
            torch.manual_seed(0)
            model = open_clip.create_model(model_name, pretrained=None, **kwargs)
        weights_id = f"random:{_params_digest(model)}"
    elif weights in open_clip.list_pretrained_tags_by_model(model_name):
        tag_cfg = open_clip.get_pretrained_cfg(model_name, weights)
        if tag_cfg.get("quick_gelu", False):
            kwargs["force_quick_gelu"] = True
        try:
            model = open_clip.create_model(model_name, pretrained=weights, **kwargs)
        except Exception as e:  # open_clip raises RuntimeError around any download error
            offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0", "false", "False")
            why = "HF_HUB_OFFLINE is set and they are not in the cache" if offline else "no internet?"
            raise HiclrError(
                f"could not download the CLIP weights '{weights}' for {model_name} ({why}): {e}",
                _HINT_LOCAL.format(
                    m=model_name,
                    t=weights,
                    q=_HINT_QUICKGELU.format(m=model_name) if tag_cfg.get("quick_gelu", False) else "",
                ),
            ) from e
        weights_id = f"tag:{weights}"
    elif os.sep in weights or "/" in weights or weights.endswith(_CKPT_SUFFIXES) or Path(weights).exists():
        path = Path(weights).expanduser()
        if not path.is_file():
            raise HiclrError(
                f"CLIP checkpoint file '{weights}' does not exist",
                "pass the path of an open_clip/OpenAI checkpoint of model "
                f"'{model_name}', or an open_clip tag ({open_clip.list_pretrained_tags_by_model(model_name)})",
            )
        try:
            model = open_clip.create_model(model_name, pretrained=str(path), **kwargs)
        except Exception as e:
            raise HiclrError(
                f"could not load CLIP checkpoint '{path}' into model '{model_name}': {e}",
                "check that the file is a state_dict of this architecture (OpenAI weights need the "
                f"'{model_name}-quickgelu' name only for the activation; shapes must match)",
            ) from e
        weights_id = f"file:{path.name}:{_file_digest(path)}"
    else:
        tags = open_clip.list_pretrained_tags_by_model(model_name)
        raise HiclrError(
            f"'{weights}' is neither an open_clip pretrained tag of {model_name} nor an existing file",
            f"use one of the tags {tags} or the path of a local checkpoint file"
            if tags
            else f"{model_name} has no pretrained tags: pass the path of a local checkpoint file",
        )
    model.eval()
    return model, weights_id


def _check_visual(model: nn.Module) -> None:
    """Refuse models whose image tower is not open_clip's own ViT (timm towers, ResNets, CoCa)."""
    vit_class = _open_clip().transformer.VisionTransformer
    visual = getattr(model, "visual", None)
    if not isinstance(visual, vit_class) or visual.attn_pool is not None:
        raise HiclrError(
            f"MaskCLIP needs an open_clip ViT image tower, got {type(visual).__name__}",
            "use a plain open_clip ViT model (ViT-B-16, ViT-B-32, ViT-L-14, …); timm, ResNet and "
            "attention-pooled towers are not supported",
        )


# ------------------------------------------------------------------------------------- image tower
def interpolate_pos_embed(
    pos_embed: torch.Tensor, grid: tuple[int, int], new_grid: tuple[int, int]
) -> torch.Tensor:
    """Resize a ViT positional embedding to another patch grid.

    Args:
        pos_embed: (1 + gh·gw, W) — class token first, then the patch grid in row-major order.
        grid: (gh, gw) of ``pos_embed``.
        new_grid: (h, w) wanted.

    Returns:
        (1 + h·w, W) float32: the class token's entry unchanged, the grid resized bicubically
        (``align_corners=False``; at ``new_grid == grid`` this is the identity).
    """
    gh, gw = grid
    cls_pe, grid_pe = pos_embed[:1].float(), pos_embed[1:].float()
    width = grid_pe.shape[-1]
    grid_pe = grid_pe.reshape(1, gh, gw, width).permute(0, 3, 1, 2)  # (1, W, gh, gw)
    grid_pe = F.interpolate(grid_pe, size=tuple(new_grid), mode="bicubic", align_corners=False)
    grid_pe = grid_pe.permute(0, 2, 3, 1).reshape(-1, width)  # (h·w, W)
    return torch.cat([cls_pe, grid_pe], dim=0)


# ----------------------------------------------------------------------------------------- MaskCLIP
class MaskCLIP:
    """Dense CLIP features, logits and labels for batches of RGB frames.

    Args:
        model: an open_clip ``CLIP`` (or ``CustomTextCLIP``) with an open_clip ViT image tower.
        model_name: its architecture name (tokenizer choice, cache key).
        weights_id: which weights it holds (cache key; see :func:`load_clip`).
        device: where to run; the model is moved there. ``None``: where the model already is.
        precision: ``"fp32"``, ``"fp16"`` or ``"bf16"`` (autocast; see the module docstring).
        input_size: (H, W) the frames are resized to, multiples of the patch size; ``None``: each
            frame at its own size rounded to the nearest multiple of the patch size.
        key_smoothing, prompt_denoising: MaskCLIP's refinements in :meth:`label_images`.
        ks_thresh, pd_thresh: their thresholds.
        dense: the last block, ``maskclip`` (the paper's), ``sclip``, ``clearclip`` or ``naclip``
            (:mod:`hiclr.vlm.dense`); it also sets the positional-embedding resize and the softmax
            scale of the scores (``self.temperature``).
        pamr_steps: PAMR iterations on the output grid after upsampling (:mod:`hiclr.vlm.pamr`); 0: off.
        batch_size: frames per forward pass (memory bound; results do not depend on it).
        templates: prompt templates for :meth:`text_embeddings`.
    """

    def __init__(
        self,
        model: nn.Module,
        model_name: str,
        weights_id: str,
        *,
        device: str | torch.device | None = None,
        precision: str = "fp32",
        input_size: tuple[int, int] | None = None,
        key_smoothing: bool = False,
        prompt_denoising: bool = False,
        ks_thresh: float = KS_THRESH,
        pd_thresh: float = PD_THRESH,
        batch_size: int = 8,
        templates: Sequence[str] = TEMPLATES,
        dense: str = "maskclip",
        pamr_steps: int = 0,
    ) -> None:
        _check_visual(model)
        if dense not in MODES:
            raise HiclrError(f"unknown dense mode '{dense}'", f"use one of {', '.join(MODES)} (pseudolabel.dense)")
        if pamr_steps < 0:
            raise HiclrError(f"pamr_steps = {pamr_steps} is negative", "give 0 (off) or more (pseudolabel.pamr_steps)")
        if precision not in PRECISIONS:
            raise HiclrError(f"unknown precision '{precision}'", f"use one of {sorted(PRECISIONS)}")
        self.model = model.eval()
        if device is not None:
            self.model.to(device)
        self.device = next(model.parameters()).device
        self.model_name = model_name
        self.weights_id = weights_id
        self.precision = precision
        self.patch_size: tuple[int, int] = tuple(model.visual.patch_size)  # type: ignore[assignment]
        if input_size is not None and (
            input_size[0] % self.patch_size[0] or input_size[1] % self.patch_size[1]
        ):
            raise HiclrError(
                f"MaskCLIP input size {tuple(input_size)} is not a multiple of the patch size {self.patch_size}",
                "choose an input size whose height and width are multiples of the patch size",
            )
        self.input_size = None if input_size is None else (int(input_size[0]), int(input_size[1]))
        self.key_smoothing = key_smoothing
        self.prompt_denoising = prompt_denoising
        self.ks_thresh = ks_thresh
        self.pd_thresh = pd_thresh
        self.batch_size = max(1, int(batch_size))
        self.templates = tuple(templates)
        self.dense = dense
        self.temperature = MODES[dense].temperature
        self.pamr_steps = int(pamr_steps)
        cfg = getattr(model.visual, "preprocess_cfg", None) or {}
        from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

        mean = cfg.get("mean", OPENAI_DATASET_MEAN)
        std = cfg.get("std", OPENAI_DATASET_STD)
        self._mean = torch.tensor(mean, dtype=torch.float32, device=self.device).view(1, 3, 1, 1) * 255.0
        self._std = torch.tensor(std, dtype=torch.float32, device=self.device).view(1, 3, 1, 1) * 255.0
        self._tokenizer: Any = None

    @classmethod
    def load(
        cls,
        model_name: str = "ViT-B-16",
        weights: str | None = "openai",
        device: str | torch.device = "cpu",
        precision: str = "fp32",
        **kwargs: Any,
    ) -> MaskCLIP:
        """Build from an open_clip name and weights (tag, file or ``None``); see :func:`load_clip`.
        Keyword arguments go to the constructor (``input_size``, ``key_smoothing``, …)."""
        model, weights_id = load_clip(model_name, weights, device)
        return cls(model, model_name, weights_id, device=device, precision=precision, **kwargs)

    # ------------------------------------------------------------------------------------ helpers
    def _autocast(self) -> Any:
        dtype = PRECISIONS[self.precision]
        return torch.autocast(device_type=self.device.type, dtype=dtype, enabled=dtype != torch.float32)

    def _grid_for(self, height: int, width: int) -> tuple[int, int]:
        """Patch grid (h, w) for a frame of ``height``×``width`` pixels under the input size policy."""
        if self.input_size is not None:
            return self.input_size[0] // self.patch_size[0], self.input_size[1] // self.patch_size[1]
        return max(1, round(height / self.patch_size[0])), max(1, round(width / self.patch_size[1]))

    def _pixels(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (b, H, W, 3) on any device → normalised float32 (b, 3, h·p, w·p) on the model device."""
        x = images.to(self.device, non_blocking=True).permute(0, 3, 1, 2).float()
        gh, gw = self._grid_for(x.shape[2], x.shape[3])
        size = (gh * self.patch_size[0], gw * self.patch_size[1])
        if tuple(x.shape[2:]) != size:
            x = F.interpolate(x, size=size, mode="bicubic", align_corners=False, antialias=True).clamp_(
                0, 255
            )
        return (x - self._mean) / self._std

    def _frame_at(self, frame: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """uint8 (H, W, 3) → float (1, 3, H_d, W_d) 0–255 on the model device, bilinear (PAMR's image)."""
        x = frame.to(self.device).permute(2, 0, 1)[None].float()
        if tuple(x.shape[2:]) != tuple(size):
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        return x

    @staticmethod
    def _as_images(images: torch.Tensor | np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(np.ascontiguousarray(images)) if isinstance(images, np.ndarray) else images
        if t.dtype != torch.uint8 or t.ndim != 4 or t.shape[-1] != 3:
            raise ValueError(f"images must be uint8 (B, H, W, 3), got {tuple(t.shape)} {t.dtype}")
        return t

    def _encode(self, pixels: torch.Tensor, want_keys: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Normalised pixels (b, 3, H, W) → unit features (b, D, h, w) float32 and keys (b, h·w, W)."""
        visual = self.model.visual
        b = pixels.shape[0]
        x = visual.conv1(pixels)  # (b, W, h, w)
        gh, gw = x.shape[2], x.shape[3]
        x = x.flatten(2).transpose(1, 2)  # (b, h·w, W)
        cls_tok = visual.class_embedding.to(x.dtype).view(1, 1, -1).expand(b, 1, -1)
        x = torch.cat([cls_tok, x], dim=1)  # (b, 1 + h·w, W)
        resize = interpolate_pos_embed if MODES[self.dense].pos_embed == "size" else interpolate_pos_embed_offset
        pos = resize(visual.positional_embedding, tuple(visual.grid_size), (gh, gw))
        x = visual.ln_pre(x + pos.to(x.dtype))
        blocks = visual.transformer.resblocks
        batch_first = getattr(visual.transformer, "batch_first", True)
        x = x if batch_first else x.transpose(0, 1)
        for block in blocks[:-1]:
            x = block(x)
        x = x if batch_first else x.transpose(0, 1)
        keys = block_keys(blocks[-1], x[:, 1:]) if want_keys else None
        if self.dense == "maskclip":  # the value path mixes no tokens: the class token is dropped first
            z = value_path_block(blocks[-1], x[:, 1:])
        else:  # the class token takes part in the attention; ln_post is per token, so drop it here
            z = last_block(self.dense, blocks[-1], x, (gh, gw))[:, 1:]
        z = visual.ln_post(z)
        if visual.proj is not None:
            z = z @ visual.proj.to(z.dtype)
        feats = F.normalize(z.float(), dim=-1)  # (b, h·w, D)
        feats = feats.transpose(1, 2).reshape(b, -1, gh, gw)
        return feats, None if keys is None else keys.float()

    def _chunks(self, images: torch.Tensor | np.ndarray) -> Any:
        t = self._as_images(images)
        for start in range(0, t.shape[0], self.batch_size):
            yield t[start : start + self.batch_size]

    # --------------------------------------------------------------------------------- public API
    @torch.no_grad()
    def text_embeddings(self, class_names: Sequence[str]) -> torch.Tensor:
        """Prompt-ensemble class embeddings: (C, D) float32 on the CPU, unit-norm rows.

        Each class is encoded on its own (all templates in one batch), so a row depends only on its
        class name: permuting ``class_names`` permutes the rows.
        """
        if self._tokenizer is None:
            open_clip = _open_clip()
            ctx = getattr(self.model, "context_length", None)
            self._tokenizer = open_clip.get_tokenizer(self.model_name, context_length=ctx)
        rows = []
        for name in class_names:
            tokens = self._tokenizer(prompts_for(name, self.templates)).to(self.device)
            with self._autocast():
                emb = self.model.encode_text(tokens)
            emb = F.normalize(emb.float(), dim=-1).mean(dim=0)
            rows.append(F.normalize(emb, dim=0))
        return torch.stack(rows).cpu()

    @torch.no_grad()
    def dense_features(self, images: torch.Tensor | np.ndarray) -> torch.Tensor:
        """MaskCLIP features of uint8 RGB frames (B, H, W, 3) → (B, D, h, w) float32, unit-norm over D,
        on the model device; (h, w) is the patch grid of the input size policy (H/16, W/16 for
        frames whose sides are multiples of 16)."""
        out = []
        for chunk in self._chunks(images):
            with self._autocast():
                feats, _ = self._encode(self._pixels(chunk), want_keys=False)
            out.append(feats)
        return torch.cat(out)

    @torch.no_grad()
    def dense_logits(self, images: torch.Tensor | np.ndarray, text_emb: torch.Tensor) -> torch.Tensor:
        """Cosine logits (B, C, h, w) float32 between every patch feature and each text embedding (C, D)."""
        feats = self.dense_features(images)
        return torch.einsum("bdhw,cd->bchw", feats, text_emb.to(feats.device, torch.float32))

    def _refined_probs(self, logits: torch.Tensor, keys: torch.Tensor | None) -> torch.Tensor | None:
        """Prompt denoising and key smoothing on the patch grid: (b, C, h, w) logits → probabilities,
        or None when both are off (the plain path upsamples logits instead)."""
        if not (self.prompt_denoising or self.key_smoothing):
            return None
        logits = logits.clone()
        b, c, h, w = logits.shape
        if self.prompt_denoising:
            peak = torch.softmax(self.temperature * logits, dim=1).flatten(2).amax(dim=2)  # (b, C)
            logits[(peak < self.pd_thresh)[:, :, None, None].expand_as(logits)] = _REMOVED_LOGIT
        probs = torch.softmax(self.temperature * logits, dim=1)
        if self.key_smoothing and keys is not None:
            p = probs.flatten(2).transpose(1, 2)  # (b, h·w, C)
            k = F.normalize(keys, dim=-1)
            weight = (k @ k.transpose(1, 2)).clamp_(min=0)  # (b, h·w, h·w) cosine, self = 1
            smoothed = (weight @ p) / weight.sum(dim=2, keepdim=True)
            low = p.amax(dim=2, keepdim=True) < self.ks_thresh  # (b, h·w, 1)
            p = torch.where(low, smoothed, p)
            probs = p.transpose(1, 2).reshape(b, c, h, w)
        return probs

    @torch.no_grad()
    def label_images(
        self,
        images: torch.Tensor | np.ndarray,
        text_emb: torch.Tensor,
        out_size: tuple[int, int] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-pixel labels and scores of uint8 RGB frames (B, H, W, 3).

        Cosine logits are upsampled bilinearly (``align_corners=False``) to ``out_size`` (H_d, W_d)
        (default: the frames' own size), refined by PAMR when ``pamr_steps`` > 0 (the frame resized
        bilinearly to (H_d, W_d) gives the affinities), then argmax and the softmax probability
        (×``temperature``) of the winner. With key smoothing or prompt denoising on, the refined
        patch probabilities are upsampled (and PAMR-refined) instead.

        Returns:
            labels (B, H_d, W_d) int64 class indices and scores (B, H_d, W_d) float32 in (0, 1],
            on the model device.
        """
        text = text_emb.to(self.device, torch.float32)
        want_keys = self.key_smoothing
        labels, scores = [], []
        for chunk in self._chunks(images):
            size = tuple(out_size) if out_size is not None else (chunk.shape[1], chunk.shape[2])
            with self._autocast():
                feats, keys = self._encode(self._pixels(chunk), want_keys)
            logits = torch.einsum("bdhw,cd->bchw", feats, text)
            probs = self._refined_probs(logits, keys)
            for i in range(logits.shape[0]):  # one frame at a time bounds the (C, H_d, W_d) buffers
                grid = logits[i : i + 1] if probs is None else probs[i : i + 1]
                up = F.interpolate(grid, size=size, mode="bilinear", align_corners=False)
                if self.pamr_steps:
                    up = pamr(self._frame_at(chunk[i], size), up, self.pamr_steps, PAMR_DILATIONS)
                if probs is None:
                    up = torch.softmax(self.temperature * up, dim=1)
                score, label = up[0].max(dim=0)
                labels.append(label)
                scores.append(score.float())
        return torch.stack(labels), torch.stack(scores)
