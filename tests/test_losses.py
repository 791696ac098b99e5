"""Each loss of the paper on toy inputs whose value is computed by hand."""

from __future__ import annotations

import math

import numpy as np
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


def test_pair_ce_over_rows_equals_the_per_pair_sum() -> None:
    """The row-count form of L_ce is the per-pair cross-entropy: value and gradient, with and without weights."""
    from hiclr.losses import pair_ce_loss_per_pair

    g = torch.Generator().manual_seed(0)
    T = torch.nn.functional.normalize(torch.randn(5, 8, generator=g), dim=1)
    point = torch.randint(0, 40, (300,), generator=g)  # rows seen several times, some never
    label = torch.randint(0, 5, (300,), generator=g)
    w = torch.tensor([0.5, 2.0, 1.0, 0.0, 3.0])
    for weight in (None, w):
        f1 = torch.randn(50, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64).requires_grad_()
        f2 = f1.detach().clone().requires_grad_()
        a = pair_ce_loss(f1, T.double(), point, label, 0.1, True, weight)
        b = pair_ce_loss_per_pair(f2, T.double(), point, label, 0.1, True, weight)
        a.backward()
        b.backward()
        # class_logits computes in float32: the two sums differ only in their order
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
        torch.testing.assert_close(f1.grad, f2.grad, rtol=1e-5, atol=1e-7)


def test_weighted_pair_ce_by_hand() -> None:
    # one point, logits (0, 0) (uniform, -log p = log 2 for both labels) seen as class 0 and class 1
    f = torch.tensor([[1.0, 0.0]])
    T = torch.tensor([[0.0, 1.0], [0.0, -1.0]])  # both logits 0
    f2 = torch.tensor([[0.0, 1.0]])  # logits (1, -1): -log p0 = log(1+e^-2), -log p1 = log(1+e^2)
    loss = pair_ce_loss(f2, T, torch.tensor([0, 0]), torch.tensor([0, 1]), 1.0, False, torch.tensor([3.0, 1.0]))
    expected = (3 * math.log(1 + math.exp(-2)) + math.log(1 + math.exp(2))) / 4
    assert float(loss) == pytest.approx(expected, rel=1e-6)
    assert float(pair_ce_loss(f, T, torch.tensor([0, 0]), torch.tensor([0, 1]), 1.0, False,
                              torch.tensor([3.0, 1.0]))) == pytest.approx(math.log(2), rel=1e-6)


def test_class_weights_by_hand() -> None:
    from hiclr.train.balance import class_weights

    # f = (0.75, 0.25, 0): inverse frequency (4/3, 4, 0), scaled so that sum f*w = 1 -> (2/3, 2, 0)
    np.testing.assert_allclose(class_weights(np.array([3, 1, 0]), 1.0), [2 / 3, 2, 0], rtol=1e-6)
    # inverse square root: (1/sqrt(.75), 2) / (sqrt(.75) + .5)
    s = math.sqrt(0.75) + 0.5
    np.testing.assert_allclose(class_weights(np.array([3, 1, 0]), 0.5), [1 / math.sqrt(0.75) / s, 2 / s, 0], rtol=1e-6)
    np.testing.assert_allclose(class_weights(np.array([5, 5]), 0.0), [1, 1])  # p = 0: unweighted


def test_combine_terms_mean_and_weighted() -> None:
    from hiclr.train.config import TrainConfig
    from hiclr.train.model import combine_terms

    losses = {"ce": torch.tensor(1.0), "intra": torch.tensor(2.0), "inter": torch.tensor(3.0), "kl": torch.tensor(4.0)}
    assert float(combine_terms(losses, TrainConfig())) == pytest.approx(2.5)  # the paper's mean
    cfg = TrainConfig(combine="weighted", corr_weight=0.5, kl_weight=2.0)
    assert float(combine_terms(losses, cfg)) == pytest.approx(1 + 0.5 * (2 + 3) + 2 * 4)
    assert float(combine_terms({"ce": torch.tensor(1.0)}, cfg)) == pytest.approx(1.0)  # L_ce alone keeps weight 1
