"""Two CPU processes under torchrun (gloo): the same training code path, one run folder."""

from __future__ import annotations

import csv
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

WORKER = textwrap.dedent('''
    import sys, torch
    from torch import nn
    import hiclr.train.loop as loop
    from hiclr.train.config import TrainConfig

    class Tiny(nn.Module):
        def __init__(self, cin, cout):
            super().__init__()
            self.mlp = nn.Sequential(nn.Linear(3 + cin, 16), nn.ReLU(), nn.Linear(16, cout))
        def forward(self, points, feats):
            return [self.mlp(torch.cat([p, f], 1)) for p, f in zip(points, feats)]
        def forward_rows(self, points, feats):
            rows = torch.cat(self.forward(points, feats))
            return rows, torch.arange(rows.shape[0]), [len(p) for p in points]

    loop.build_network = lambda cfg, out_channels: Tiny(cfg.in_channels, out_channels)
    cfg = TrainConfig(epochs=2, batch_size=1, samples=16, correlation_from=2, kl_from=2, transformer_layers=1,
                      transformer_heads=2, device="cpu", val_split="")
    loop.train(sys.argv[1], sys.argv[2], cfg)
''')


@pytest.mark.slow
def test_torchrun_two_processes(toy_store, tmp_path) -> None:
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    run = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29533",
                           str(script), str(toy_store.root), str(run)], capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = list(csv.DictReader(Path(run / "log.csv").read_text().splitlines()))
    assert [r["epoch"] for r in rows] == ["1", "2"] and rows[1]["kl"]
    state = torch.load(run / "ckpt/last.pt", weights_only=True)
    assert state["step"] == 4  # 3 scenes over 2 processes → 2 per process (one padded) → 2 steps per epoch
