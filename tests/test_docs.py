"""README.md and docs/: every command shown names what exists, and every link lands.

Those that can run here are run by test_docs_commands.py; the rest start
stacks or reach clouds, and what would go stale of them is ours: each make
target, each script, each link and anchor. A command of another tool must
be one this repo installs, or one of the platforms' own CLIs the documents
say only the platform has.
"""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
MAKE_TARGETS = set(re.findall(r"^([\w-]+):", (REPO / "Makefile").read_text(), re.MULTILINE))
VENV_BIN = Path(sys.executable).parent
# Tools a reader brings or the platform has: Docker and its Compose, the
# shell's own, and the cloud CLIs named where only that cloud can run them.
OTHER_TOOLS = {"docker", "docker-compose", "curl", "export", "cd", "helm", "kind", "gcloud", "aws", "eb", "minikube"}
SHELL_FENCES = {"sh", "bash", "shell", "console"}


def shell_commands(document: Path) -> list[str]:
    """Each command of the document's shell blocks, continuation lines joined."""
    commands: list[str] = []
    fence: str | None = None
    pending = ""
    for line in document.read_text().splitlines():
        if match := re.match(r"^\s*```(\w*)", line):
            fence = None if fence is not None else match.group(1)
            continue
        if fence not in SHELL_FENCES:
            continue
        text = line.strip()
        if fence == "console":
            if not text.startswith("$ "):
                continue
            text = text[2:]
        if not pending and (not text or text.startswith("#")):
            continue
        pending += " " + text.removesuffix("\\")
        if not text.endswith("\\"):
            commands.append(pending.split(" #")[0].strip())
            pending = ""
    return commands


def program(command: str) -> list[str]:
    """The command's words from its program on (VAR=value assignments dropped)."""
    # Placeholders such as <the task execution role> stand for one word.
    words = shlex.split(re.sub(r"<[^>]*>", "PLACEHOLDER", command), comments=True)
    while words and re.match(r"^[A-Z_][A-Z0-9_]*=", words[0]):
        words.pop(0)
    return words


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(document: Path) -> set[str]:
    found = set()
    fence = False
    for line in document.read_text().splitlines():
        if line.lstrip().startswith("```"):
            fence = not fence
        elif not fence and (match := re.match(r"^#{1,6} (.+)$", line)):
            found.add(slug(match.group(1)))
    return found


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_shell_command_names_what_exists(document: Path) -> None:
    for command in shell_commands(document):
        words = program(command)
        if not words:
            continue
        first = words[0]
        where = f"{document.relative_to(REPO)}: {command!r}"
        if first == "make":
            targets = [word for word in words[1:] if not word.startswith("-") and "=" not in word]
            assert targets, where
            for target in targets:
                assert target in MAKE_TARGETS, f"{where}: no make target {target!r}"
        elif first.startswith(("scripts/", "./scripts/")):
            path = REPO / first
            assert path.is_file(), f"{where}: {first} does not exist"
            assert path.stat().st_mode & 0o111, f"{where}: {first} is not executable"
        elif first.startswith(".venv/bin/"):
            assert (VENV_BIN / first.removeprefix(".venv/bin/")).exists(), f"{where}: make deps installs no {first}"
        elif first == "kubectl":
            assert (VENV_BIN / "kubectl").exists(), f"{where}: make deps installs kubectl into .venv/"
        elif first.startswith("../shared/"):
            continue  # the team's offline tools, beside a clone on machines without Docker Hub
        else:
            assert first in OTHER_TOOLS, f"{where}: {first!r} is neither a make target, a script nor a known tool"


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_make_target_and_script_named_in_the_text_exists(document: Path) -> None:
    text = document.read_text()
    for code in re.findall(r"`([^`\n]+)`", text):
        for target in re.findall(r"(?:^|\s)make ([a-z][\w-]*)", code):
            assert target in MAKE_TARGETS, f"{document.relative_to(REPO)}: `{code}`: no make target {target!r}"
        for script in re.findall(r"(?:^|[\s(])(scripts/[\w./-]+\w)", code):
            assert (REPO / script).exists(), f"{document.relative_to(REPO)}: `{code}`: {script} does not exist"


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_link_lands(document: Path) -> None:
    for target in re.findall(r"\]\(([^)\s]+)\)", document.read_text()):
        if re.match(r"^[a-z]+://", target):
            continue
        path, _, anchor = target.partition("#")
        resolved = (document.parent / path) if path else document
        assert resolved.exists(), f"{document.relative_to(REPO)}: the link {target} goes nowhere"
        if anchor and resolved.suffix == ".md":
            assert anchor in anchors(resolved), f"{document.relative_to(REPO)}: {target}: no such heading"


def test_the_readme_is_a_front_door() -> None:
    readme = (REPO / "README.md").read_text()
    # The first screens: what this is, the two commands, the picture, a table of documents.
    assert len(readme.splitlines()) < 150
    assert readme.index("docker-compose up --build") < readme.index("make dev") < readme.index("## Architecture")
    linked = set(re.findall(r"\]\(docs/([\w.-]+\.md)\)", readme))
    documents = {path.name for path in (REPO / "docs").glob("*.md")}
    assert linked == documents, f"documents the README does not point to: {documents - linked}"
    for topic in ("api", "client", "containers", "kubernetes", "elastic-beanstalk", "ci", "faults", "observability"):
        assert f"{topic}.md" in documents
    assert {"configuration.md", "benchmarks.md"} <= documents
