"""The docs match the program: links resolve, and every `main.py` command the user guide shows parses."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

import main

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_relative_links_point_to_files_that_exist(doc):
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", doc.read_text()):
        if "://" in target or target.startswith("mailto:"):
            continue
        assert (doc.parent / target).exists(), f"{doc.name} links to missing {target}"


def test_every_command_in_the_user_guide_parses():
    text = (ROOT / "docs" / "USER_GUIDE.md").read_text()
    commands = [line.split("main.py", 1)[1].split("#")[0] for line in text.splitlines()
                if "python main.py" in line and line.strip().startswith(".venv/bin/python")]
    assert len(commands) >= 2
    parser = main.build_parser()
    for command in commands:
        args = parser.parse_args(shlex.split(command))  # exits (a failure) on an unknown option
        assert callable(args.run)
