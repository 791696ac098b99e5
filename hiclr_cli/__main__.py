"""``python -m hiclr_cli``: the ``hiclr`` command."""

from hiclr_cli.main import cli

if __name__ == "__main__":
    cli(prog_name="hiclr")
