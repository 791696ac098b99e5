import subprocess
import sys

from click.testing import CliRunner

from hiclr_cli.main import ORDER, cli


def test_help_lists_commands_in_pipeline_order_without_torch():
    code = ("import sys; from click.testing import CliRunner; from hiclr_cli.main import cli; "
            "r = CliRunner().invoke(cli, ['--help']); print(r.output); "
            "assert 'torch' not in sys.modules, 'torch imported'")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    listed = [line.split()[0] for line in out.stdout.split("Commands")[1].splitlines()[1:] if line.startswith("  ") and line.split()]
    listed = [n for n in listed if n in ORDER]
    assert listed == sorted(listed, key=ORDER.index)
    assert "prepare" in listed and "evaluate" in listed


def test_library_error_is_one_red_line(tmp_path):
    r = CliRunner().invoke(cli, ["evaluate", str(tmp_path / "nowhere")])
    assert r.exit_code == 1
    assert "error:" in r.output and "Traceback" not in r.output
    assert "hint:" in r.output


def test_debug_shows_traceback(tmp_path):
    r = CliRunner().invoke(cli, ["--debug", "evaluate", str(tmp_path / "nowhere")])
    assert r.exit_code == 1 and r.exception is not None
