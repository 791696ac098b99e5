"""HiclModel's loss terms under the recipe keys that change them: train.kl_temperature (τ of L_kl)
and the train.transformer_detach probe (L̂_ce trains the transformers only)."""

from __future__ import annotations

import torch

from hiclr.losses import feedback_kl_loss
from hiclr.train.config import TrainConfig
from hiclr.train.data import SceneItem
from hiclr.train.model import HiclModel


def _model(net_cls: type, **kw: object) -> HiclModel:
    cfg = TrainConfig(**{"samples": 8, "transformer_layers": 1, "transformer_heads": 2, "transformer_mlp_ratio": 1.0,
                         "stages": ["intraset", "intrascene", "feedback"], "device": "cpu", **kw})  # type: ignore[arg-type]
    torch.manual_seed(0)
    text = torch.nn.functional.normalize(torch.randn(3, 16), dim=1)
    return HiclModel(net_cls(3, 16), text, cfg)


def _batch() -> list[SceneItem]:
    g = torch.Generator().manual_seed(1)
    n = 20
    return [SceneItem("s0", torch.rand(n, 3, generator=g), torch.rand(n, 3, generator=g), torch.arange(n),
                      torch.randint(0, 3, (n,), generator=g), torch.arange(0, n, 2), torch.randint(0, 3, (n // 2,), generator=g))]


def test_kl_temperature_is_the_tau_of_both_softmaxes(tiny_net) -> None:
    batch = _batch()
    default = _model(tiny_net, kl_over="logits")
    own = _model(tiny_net, kl_over="logits", kl_temperature=0.5)
    own.load_state_dict(default.state_dict())
    # by hand: the same features and aggregated features, L_kl at τ = 0.07 (ψ's) and at τ = 0.5
    rows, _, _ = default.net.forward_rows([batch[0].coord], [batch[0].feats])
    f = rows[batch[0].sample]
    agg = default.intra(f, torch.zeros(len(f), dtype=torch.long))
    for model, tau in ((default, 0.07), (own, 0.5)):
        got = model(batch, ["ce", "intra", "kl"])["kl"]
        want = feedback_kl_loss(f, agg, "logits", default.text, tau, True)
        torch.testing.assert_close(got, want)
    with torch.no_grad():
        assert abs(default(batch, ["kl"])["kl"].item() - own(batch, ["kl"])["kl"].item()) > 1e-4


def test_transformer_detach_stops_the_correlation_gradient_at_the_3d_network(tiny_net) -> None:
    batch = _batch()
    grads = {}
    for detach in (False, True):
        model = _model(tiny_net, transformer_detach=detach)
        model(batch, ["intra"])["intra"].backward()
        net = torch.cat([p.grad.flatten() for p in model.net.parameters() if p.grad is not None] or [torch.zeros(1)])
        tr = torch.cat([p.grad.flatten() for p in model.transformer_parameters() if p.grad is not None])
        grads[detach] = (float(net.abs().sum()), float(tr.abs().sum()))
    assert grads[False][0] > 0 and grads[True][0] == 0.0  # L̂_ce reaches the 3D network only without detach
    assert grads[True][1] > 0 and abs(grads[True][1] - grads[False][1]) < 1e-6 * grads[False][1] + 1e-9
