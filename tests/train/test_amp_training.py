"""bf16 training on CPU: used only where the CPU has native bf16, and then it tracks fp32."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

import hiclr.train.model as model_module
from hiclr.train import loop
from hiclr.train.config import TrainConfig
from hiclr.train.loop import train
from hiclr.train.model import cpu_native_bf16, use_amp


def _cfg(**kw: object) -> TrainConfig:
    base: dict[str, object] = {"epochs": 3, "batch_size": 2, "samples": 32, "ce_from": 1, "correlation_from": 2, "kl_from": 3,
                               "lr": 0.05, "transformer_layers": 1, "transformer_heads": 2, "transformer_mlp_ratio": 1.0,
                               "seed": 3, "device": "cpu", "val_split": "", "workers": 0}
    base.update(kw)
    return TrainConfig(**base)  # type: ignore[arg-type]


def _force_native(monkeypatch: pytest.MonkeyPatch, native: bool) -> None:
    monkeypatch.setattr(model_module, "cpu_native_bf16", lambda: native)
    monkeypatch.setattr(loop, "cpu_native_bf16", lambda: native)


def test_amp_is_used_on_cpu_only_with_native_bf16(monkeypatch, toy_store, tiny_net, tmp_path) -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert use_amp(True, cuda) and not use_amp(False, cuda)
    _force_native(monkeypatch, False)
    assert not use_amp(True, cpu)
    train(toy_store.root, tmp_path / "emulated", _cfg(epochs=1))
    env = json.loads((tmp_path / "emulated/env.json").read_text())
    assert env["amp"].startswith("off: this CPU has no native bf16") and env["cpu_native_bf16"] is False
    _force_native(monkeypatch, True)
    assert use_amp(True, cpu) and not use_amp(False, cpu)
    train(toy_store.root, tmp_path / "native", _cfg(epochs=1))
    assert json.loads((tmp_path / "native/env.json").read_text())["amp"].startswith("bf16")


def _losses(run: Path) -> list[float]:
    return [float(r["loss"]) for r in csv.DictReader((run / "log.csv").read_text().splitlines())]


@pytest.mark.parametrize("mode", ["native", "forced"])
def test_bf16_steps_track_fp32(mode, monkeypatch, toy_store, tiny_net, tmp_path) -> None:
    """Three epochs (every loss term on in the last) in bf16 autocast and in fp32 from the same start:
    the epoch losses agree within 3 % and the final weights within 3 % (relative L2).
    ``native`` runs the real rule (skipped on CPUs without AVX512-BF16/AMX, where hiclr never uses
    bf16); ``forced`` runs the same bf16 arithmetic, emulated, on any CPU."""
    if mode == "native" and not cpu_native_bf16():
        pytest.skip("this CPU has no native bf16 (AVX512-BF16 or AMX): hiclr trains in fp32 here")
    if mode == "forced":
        _force_native(monkeypatch, True)
    torch.set_num_threads(1)
    train(toy_store.root, tmp_path / "fp32", _cfg(amp=False))
    train(toy_store.root, tmp_path / "bf16", _cfg(amp=True))
    assert json.loads((tmp_path / "bf16/env.json").read_text())["amp"].startswith("bf16")
    a, b = _losses(tmp_path / "fp32"), _losses(tmp_path / "bf16")
    assert a != b  # bf16 really ran
    for x, y in zip(a, b):
        assert y == pytest.approx(x, rel=3e-2)
    wa = torch.load(tmp_path / "fp32/ckpt/last.pt", weights_only=True)["net"]
    wb = torch.load(tmp_path / "bf16/ckpt/last.pt", weights_only=True)["net"]
    for k in wa:
        assert wb[k].dtype == torch.float32  # master weights stay fp32
        assert float((wa[k] - wb[k]).norm() / wa[k].norm().clamp_min(1e-12)) < 3e-2, k
