"""The README's promises to a newcomer, checked."""

from __future__ import annotations

import re
from pathlib import Path

from admin.config import load_settings

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_opens_with_run_and_test_commands() -> None:
    """Ensure the first two sh blocks are one-line install-and-run and install-and-test commands."""
    blocks = re.findall(r"```sh\n(.*?)```", README.read_text(), re.S)
    run, test = blocks[0].strip(), blocks[1].strip()
    assert "\n" not in run and "\n" not in test
    assert "mailward init --data ./var --demo" in run and "mailward serve --data ./var" in run
    assert "pip install" in test and "pytest" in test


def test_readme_configuration_example_loads(tmp_path: Path) -> None:
    """Ensure the mailward.toml shown in the README is accepted as it stands."""
    [example] = re.findall(r"```toml\n(.*?)```", README.read_text(), re.S)
    (tmp_path / "mailward.toml").write_text(example)
    settings = load_settings(tmp_path)
    assert settings.listen.smtp_port == 25 and settings.queue.transport
