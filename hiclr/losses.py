"""The three losses of the paper (§3.1–3.3), one function each.

Notation (paper): f_m ∈ R^d a point feature, T̂_c ∈ R^d the frozen text embedding of class c,
ψ the similarity. The paper writes ψ = ⟨·,·⟩ (inner product). hiclr computes

    ψ(f, T̂_c) = ⟨n(f), T̂_c⟩ / τ,      n = L2 normalisation when ``normalize`` else identity,

so ``normalize=False, temperature=1`` is the paper's literal inner product (``train.logits: inner``,
best with ``train.grad_clip``), ``normalize=True, temperature=0.07`` is CLIP's own cosine logit with
CLIP's initial temperature (``cosine``, logit scale 1/0.07 ≈ 14.3), and ``learnable`` is the cosine
with CLIP's learnable scale (a tensor ``temperature``). Why cosine forms: CLIP text embeddings are
unit vectors, so with a raw inner product the logits are bounded only by ‖f‖ and the loss is
minimised by inflating the feature norm, which with SGD at lr 0.2 is unstable without clipping; the
cosine form keeps the geometry of CLIP's space (what the pseudo-labels were computed in) and bounds
the logits. benchmarks/results/learning-cpu.md gives the measured comparison.

Sums over pairs in the paper are means here (a constant factor per batch, independent of how many
pairs a batch happens to hold), so the terms have comparable scales when averaged (§3.4).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def class_logits(features: Tensor, text: Tensor, temperature: float | Tensor = 0.07, normalize: bool = True) -> Tensor:
    """ψ(f_m, T̂_c) for all m, c.

    features: (M, d) point features; text: (C, d) frozen text embeddings (unit length for CLIP).
    Returns (M, C) logits ⟨n(f_m), T̂_c⟩ / τ.
    """
    f = F.normalize(features.float(), dim=-1) if normalize else features.float()
    return f @ text.float().t() / temperature


def pair_ce_loss(point_features: Tensor, text: Tensor, pair_point: Tensor, pair_label: Tensor,
                 temperature: float | Tensor = 0.07, normalize: bool = True, class_weight: Tensor | None = None) -> Tensor:
    """L_ce, Eq. 1: cross-entropy over all point↔pixel pairs 𝓜 of the batch.

    point_features: (N, d) features of every point of the batch; pair_point: (P,) long index of each
    pair's point into those rows; pair_label: (P,) long pseudo-label l_m of each pair.
    A point seen in k views appears k times, as in Eq. 1. Returns a scalar: the mean over pairs
    (0 with a gradient path when P = 0). ``class_weight`` (C,): each pair weighs the weight of its
    label and the mean is over those weights, as ``F.cross_entropy(..., weight=)``.

    The pairs of one row share its logits, so the sum is taken over rows: a (row, class) count
    matrix n_rc from the pairs, then -Σ n_rc w_c log p_rc / Σ n_rc w_c — the same number as the
    per-pair cross-entropy (:func:`pair_ce_loss_per_pair`, the reference kept for tests), without
    a (P, C) gather, log-softmax and its backward per pair.
    """
    if pair_point.numel() == 0:
        return point_features.sum() * 0.0
    logits = class_logits(point_features, text, temperature, normalize)  # (N, C): once per point, not per pair
    n, c = logits.shape
    counts = torch.bincount(pair_point * c + pair_label, minlength=n * c).view(n, c).to(logits.dtype)
    if class_weight is not None:
        counts = counts * class_weight.to(logits)
    rows = torch.nonzero(counts.sum(1) > 0).squeeze(1)  # only the rows that have pairs
    counts = counts[rows]
    return -(counts * F.log_softmax(logits[rows], dim=-1)).sum() / counts.sum().clamp_min(1e-12)


def pair_ce_loss_per_pair(point_features: Tensor, text: Tensor, pair_point: Tensor, pair_label: Tensor,
                          temperature: float | Tensor = 0.07, normalize: bool = True,
                          class_weight: Tensor | None = None) -> Tensor:
    """Eq. 1 written pair by pair (the previous release's computation): the reference that
    :func:`pair_ce_loss` must equal, and the "before" of ``benchmarks/train_throughput.py``."""
    if pair_point.numel() == 0:
        return point_features.sum() * 0.0
    logits = class_logits(point_features, text, temperature, normalize)
    weight = class_weight.to(logits) if class_weight is not None else None
    return F.cross_entropy(logits[pair_point], pair_label, weight=weight)


def correlation_ce_loss(aggregated: Tensor, text: Tensor, labels: Tensor, temperature: float | Tensor = 0.07,
                        normalize: bool = True, class_weight: Tensor | None = None) -> Tensor:
    """L̂_ce, Eq. 4: cross-entropy of the transformer outputs f̂_m (Eq. 3 / Eq. 7) against the
    sampled points' labels l̂_m (majority of each point's refined pairs).

    aggregated: (M, d) transformer outputs; labels: (M,) long. Returns the mean over the M points.
    (The bias b of Eq. 3 is kept in f̂: the paper drops it only from its gradient analysis.)
    ``class_weight`` (C,): weighted mean, as in :func:`pair_ce_loss`.
    """
    if labels.numel() == 0:
        return aggregated.sum() * 0.0
    logits = class_logits(aggregated, text, temperature, normalize)
    weight = class_weight.to(logits) if class_weight is not None else None
    return F.cross_entropy(logits, labels, weight=weight)


def feedback_kl_loss(features: Tensor, aggregated: Tensor, over: str = "feature", text: Tensor | None = None,
                     temperature: float | Tensor = 0.07, normalize: bool = True) -> Tensor:
    """L_kl, Eq. 8: Σ_m KL(f_m, f̂_m) aligning the 3D network's features f_m with the aggregated
    features f̂_m, which are a fixed target (detached: the gradient reaches only the 3D network).

    The paper does not say over what the two distributions are taken; ``over`` chooses:
    - ``"feature"`` (the literal reading, default): p̂_m = softmax(n(f̂_m)/τ) and p_m = softmax(n(f_m)/τ)
      over the d feature channels;
    - ``"logits"``: softmax over the C class logits ψ(·, T̂_c) of both (needs ``text``).
    KL is taken as KL(p̂_m ‖ p_m) = Σ_k p̂ (log p̂ − log p), the usual distillation direction
    (target first). features, aggregated: (M, d). Returns the mean over the M points.
    """
    if features.shape[0] == 0:
        return features.sum() * 0.0
    target = aggregated.detach().float()
    if over == "feature":
        student = features.float()
        if normalize:
            student, target = F.normalize(student, dim=-1), F.normalize(target, dim=-1)
        log_p = F.log_softmax(student / temperature, dim=-1)
        log_q = F.log_softmax(target / temperature, dim=-1)
    elif over == "logits":
        if text is None:
            raise ValueError("feedback_kl_loss(over='logits') needs the text embeddings")
        log_p = F.log_softmax(class_logits(features, text, temperature, normalize), dim=-1)
        log_q = F.log_softmax(class_logits(target, text, temperature, normalize), dim=-1)
    else:
        raise ValueError(f"feedback_kl_loss: over must be 'feature' or 'logits', got {over!r}")
    # KL(q ‖ p) per point, summed over the distribution's support, then averaged over points.
    return F.kl_div(log_p, log_q, reduction="sum", log_target=True) / features.shape[0]
