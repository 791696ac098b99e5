"""`hiclr train` / `hiclr distill` through the command line (stand-in network, toy store)."""

from __future__ import annotations

import yaml
from click.testing import CliRunner

from hiclr_cli.main import cli


def test_train_resume_and_export_from_the_cli(toy_store, tiny_net, tmp_path) -> None:
    run = tmp_path / "run"
    common = ["--set", "train.batch_size=3", "--set", "train.samples=16", "--set", "train.device=cpu",
              "--set", "train.transformer_layers=1", "--set", "train.transformer_heads=2", "--set", "train.transformer_mlp_ratio=1", "--set", "train.val_split="]
    r = CliRunner().invoke(cli, ["train", "--data", str(toy_store.root), "--out", str(run), "--stages", "III",
                                 "--epochs", "1", *common])
    assert r.exit_code == 0, r.output
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["stages"] == ["intraset", "intrascene"] and cfg["epochs"] == 1
    r = CliRunner().invoke(cli, ["train", "--data", str(toy_store.root), "--out", str(run), "--epochs", "2", "--resume"])
    assert r.exit_code == 0, r.output
    assert "trained 2 epochs" in r.output
    r = CliRunner().invoke(cli, ["train", "--data", str(toy_store.root), "--out", str(run), "--stages", "bogus"])
    assert r.exit_code == 1 and "unknown stage" in r.output
    r = CliRunner().invoke(cli, ["distill", str(run), "--export", str(tmp_path / "m.pt")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "m.pt").is_file()
