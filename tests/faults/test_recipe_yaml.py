"""Issue 22, item 2 and the recipe weak answers: alias bombs, keys given twice, booleans for
numbers, non-UTF-8 recipes and tags inside --set are one line naming the file or the --set."""

from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path

import pytest
from faultkit import cli, refused, snapshot


def alias_bomb(path: Path, key: str = "stages") -> Path:
    """About 400 bytes that expand to 9^9 (387 million) strings."""
    lines = ['a: &a ["x","x","x","x","x","x","x","x","x"]']
    for i in range(1, 9):
        p, c = chr(96 + i), chr(97 + i)
        lines.append(f"{c}: &{c} [" + ",".join([f"*{p}"] * 9) + "]")
    path.write_text("\n".join(lines) + f"\ntrain:\n  {key}: *i\n")
    return path


def hiclr_capped(*args: str | Path, mem_gb: int = 4) -> subprocess.CompletedProcess:
    """``hiclr ARGS`` in a child process whose memory is capped: without the alias check a bomb
    fails there with a bounded MemoryError instead of filling the machine."""
    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (mem_gb << 30, mem_gb << 30))

    return subprocess.run([sys.executable, "-m", "hiclr_cli", *map(str, args)], capture_output=True, text=True,
                          preexec_fn=cap, timeout=120, check=False)


def test_an_alias_bomb_is_refused_before_settings_are_built(store_copy: Path, tmp_path: Path) -> None:
    recipe = alias_bomb(tmp_path / "bomb.yaml")
    assert len(recipe.read_bytes()) < 450
    res = hiclr_capped("train", "--data", store_copy, "--out", tmp_path / "run", "--recipe", recipe)
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
    assert res.returncode == 1 and len(lines) == 1, res.stderr[-2000:]
    assert str(recipe) in lines[0] and "anchors and aliases" in lines[0] and "— hint: write the settings out" in lines[0]
    assert not (tmp_path / "run").exists()


def test_an_alias_bomb_in_a_string_setting_or_a_set_value(store_copy: Path, tmp_path: Path) -> None:
    res = hiclr_capped("train", "--data", store_copy, "--out", tmp_path / "run", "--recipe",
                       alias_bomb(tmp_path / "bomb.yaml", key="arch"))
    assert res.returncode == 1 and "bomb.yaml: its anchors and aliases" in res.stderr, res.stderr[-2000:]
    levels = ["&a [x,x,x,x,x,x,x,x,x]"] + [f"&{chr(97 + i)} [" + ",".join([f"*{chr(96 + i)}"] * 9) + "]" for i in range(1, 9)]
    value = "[" + ", ".join(levels) + "]"
    res = hiclr_capped("oversegment", store_copy, "--set", f"oversegment.knn={value}")
    assert res.returncode == 1 and "--set 'oversegment.knn=" in res.stderr and "anchors and aliases" in res.stderr, \
        res.stderr[-2000:]


def test_small_anchors_still_work(tmp_path: Path) -> None:
    from hiclr.config import load_section
    from hiclr.train.config import TrainConfig

    recipe = tmp_path / "r.yaml"
    recipe.write_text("train:\n  stages: &s [intraset, intrascene]\n  epochs: &e 3\n  val_every: *e\n")
    cfg = load_section(TrainConfig, "train", recipe)
    assert cfg.stages == ["intraset", "intrascene"] and cfg.val_every == 3


def test_a_section_or_key_given_twice_is_refused(store_copy: Path, tmp_path: Path) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text("oversegment:\n  knn: 3\nrefine:\n  per_view: true\noversegment:\n  knn: 5\n")
    refused(cli("oversegment", store_copy, "--recipe", recipe), str(recipe), "'oversegment' is given twice",
            "line 5", "first on line 1")
    recipe.write_text("oversegment:\n  knn: 3\n  knn: 5\n")
    refused(cli("oversegment", store_copy, "--recipe", recipe), str(recipe), "'knn' is given twice")


@pytest.mark.parametrize("value", ["true", "false", "yes"])
def test_a_boolean_is_not_a_number(store_copy: Path, tmp_path: Path, value: str) -> None:
    before = snapshot(store_copy)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"train:\n  epochs: {value}\n")
    refused(cli("train", "--data", store_copy, "--out", tmp_path / "run", "--recipe", recipe),
            "train.epochs", "expected a number")
    refused(cli("oversegment", store_copy, "--set", f"oversegment.min_size={value}"), "oversegment.min_size")
    assert snapshot(store_copy) == before and not (tmp_path / "run").exists()


def test_a_non_utf8_recipe_names_the_file(store_copy: Path, tmp_path: Path) -> None:
    recipe = tmp_path / "latin1.yaml"
    recipe.write_bytes("oversegment:\n  # réglage\n  knn: 3\n".encode("latin-1"))
    refused(cli("oversegment", store_copy, "--recipe", recipe), str(recipe), "not UTF-8", "line 2", "save the file as UTF-8")


def test_a_tag_inside_set_names_the_set(store_copy: Path, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    line = refused(cli("oversegment", store_copy, "--set", f"oversegment.knn=!!python/object/apply:os.system ['touch {marker}']"),
                   "--set", "oversegment.knn", "tags")
    assert "report it" not in line and not marker.exists()
