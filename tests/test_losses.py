"""Each loss of the paper on toy inputs whose value is computed by hand."""

from __future__ import annotations

import math

import pytest
import torch

from hiclr.losses import class_logits, correlation_ce_loss, feedback_kl_loss, pair_ce_loss

T = torch.eye(2)  # two classes, anchors e0 and e1


def test_eq1_pair_ce_raw_inner_product() -> None:
    f = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    # pairs: point 0 labelled 0; point 1 labelled 0 in one view and 1 in another (it appears twice)
    loss = pair_ce_loss(f, T, torch.tensor([0, 1, 1]), torch.tensor([0, 0, 1]), temperature=1.0, normalize=False)
    e = math.e
    by_hand = (-math.log(e / (e + 1)) - math.log(1 / (1 + e**2)) - math.log(e**2 / (1 + e**2))) / 3
    assert loss.item() == pytest.approx(by_hand, rel=1e-6)


def test_eq1_cosine_with_temperature() -> None:
    f = torch.tensor([[0.0, 5.0]])  # normalised → (0, 1); τ = 0.5 → logits (0, 2)
    loss = pair_ce_loss(f, T, torch.tensor([0]), torch.tensor([1]), temperature=0.5, normalize=True)
    assert loss.item() == pytest.approx(-math.log(math.e**2 / (1 + math.e**2)), rel=1e-6)
    assert class_logits(f, T, 0.5, True).tolist() == [[0.0, 2.0]]


def test_eq1_no_pairs_is_zero_with_gradient_path() -> None:
    f = torch.ones(2, 2, requires_grad=True)
    loss = pair_ce_loss(f, T, torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long))
    loss.backward()
    assert loss.item() == 0.0 and f.grad is not None


def test_eq1_gradient_is_eq2() -> None:
    # ∂L/∂h = y - onehot (Eq. 2): with h = (1, 0) and label 0, y = (e/(e+1), 1/(e+1))
    h = torch.tensor([[1.0, 0.0]], requires_grad=True)
    pair_ce_loss(h, T, torch.tensor([0]), torch.tensor([0]), temperature=1.0, normalize=False).backward()
    y0 = math.e / (math.e + 1)
    assert h.grad[0].tolist() == pytest.approx([y0 - 1, 1 - y0], rel=1e-6)


def test_eq4_correlation_ce() -> None:
    agg = torch.tensor([[2.0, 0.0], [1.0, 1.0]])
    loss = correlation_ce_loss(agg, T, torch.tensor([1, 0]), temperature=1.0, normalize=False)
    by_hand = (-math.log(1 / (math.e**2 + 1)) - math.log(0.5)) / 2
    assert loss.item() == pytest.approx(by_hand, rel=1e-6)


@pytest.mark.parametrize("over", ["feature", "logits"])
def test_eq8_kl_by_hand_and_target_fixed(over: str) -> None:
    f = torch.zeros(1, 2, requires_grad=True)  # student: uniform (1/2, 1/2)
    agg = torch.tensor([[math.log(3.0), 0.0]], requires_grad=True)  # target: (3/4, 1/4)
    # with T = identity, the class logits equal the features, so both readings give the same number
    loss = feedback_kl_loss(f, agg, over=over, text=T, temperature=1.0, normalize=False)
    by_hand = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
    assert loss.item() == pytest.approx(by_hand, rel=1e-6)
    loss.backward()
    assert f.grad is not None and agg.grad is None  # the aggregated features are a fixed target


def test_eq8_modes_differ_and_zero_when_equal() -> None:
    f = torch.tensor([[1.0, 2.0, 0.5]])
    text = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    assert feedback_kl_loss(f, f.clone(), "feature").item() == pytest.approx(0.0, abs=1e-7)
    assert feedback_kl_loss(f, f.clone(), "logits", text).item() == pytest.approx(0.0, abs=1e-7)
    g = torch.tensor([[1.0, 2.0, 3.0]])  # differs only in channel 2, which no class anchor looks at
    a = feedback_kl_loss(f, g, "feature", normalize=False, temperature=1.0).item()
    b = feedback_kl_loss(f, g, "logits", text, normalize=False, temperature=1.0).item()
    assert b == pytest.approx(0.0, abs=1e-7)  # class logits (1, 2) are the same for both
    assert a > 0.1  # over the channels the third one differs: a real divergence
    with pytest.raises(ValueError):
        feedback_kl_loss(f, g, "bogus")
