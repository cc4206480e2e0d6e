"""Running the CLI in-process from a given folder, as a user's shell would."""

from __future__ import annotations

import os
from pathlib import Path

from typer.testing import CliRunner

from seewhy.cli import app

runner = CliRunner()


def invoke(cwd: Path, *args: str) -> tuple[int, str]:
    """``seewhy ARGS`` run in ``cwd``: (exit code, output). A crash other than SystemExit fails."""
    old = os.getcwd()
    os.chdir(cwd)
    try:
        result = runner.invoke(app, list(args))
    finally:
        os.chdir(old)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output
