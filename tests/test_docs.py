"""The README is a door: short, and everything it (or a page behind it in docs/) points to exists.

Docs rot silently: a moved page, a renamed heading, a console script dropped from setup.cfg or a Makefile target
renamed leaves a link or a command that no reader can follow. These tests fail on each of those.
"""
from __future__ import annotations

import configparser
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

README = ROOT / "README.md"
PAGES = [README, ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md"))]
README_MAX_LINES = 200

FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.S | re.M)
INLINE_CODE = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"!?\[[^\]\n]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.M)
SCRIPT = re.compile(r"\bdfssat-([a-z0-9]+(?:-[a-z0-9]+)*)")
MAKE = re.compile(r"(?:^|[\s`(])make ([a-z][\w-]*)", re.M)


def _prose(text: str) -> str:
    """``text`` without fenced code blocks and inline code: links and headings live only in the prose."""
    return INLINE_CODE.sub("", FENCE.sub("", text))


def _code(text: str) -> str:
    """Only the code of ``text`` (fenced blocks and inline spans): where commands are written."""
    return "\n".join(m.group(0) for m in (*FENCE.finditer(text), *INLINE_CODE.finditer(FENCE.sub("", text))))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped (``\\w``, ``-`` and spaces kept), spaces
    to ``-``; inline-code backticks go, their text stays."""
    text = heading.replace("`", "").strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every anchor of ``page``'s headings, with GitHub's ``-1``, ``-2`` suffixes for repeated headings."""
    seen: dict[str, int] = {}
    found = set()
    for heading in HEADING.findall(FENCE.sub("", page.read_text())):
        base = slug(heading)
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def _broken_links(page: Path) -> list[str]:
    """``page``'s relative links whose file is missing or whose ``#anchor`` names no heading of that file."""
    broken = []
    for target in LINK.findall(_prose(page.read_text())):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto: ...: not ours to check offline
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(f"{page.relative_to(ROOT)}: {target} (no such file)")
        elif anchor and (file.suffix != ".md" or anchor not in anchors(file)):
            broken.append(f"{page.relative_to(ROOT)}: {target} (no such heading in {file.relative_to(ROOT)})")
    return broken


def console_scripts() -> dict[str, str]:
    """setup.cfg's console scripts: ``dfssat-<name>`` -> ``module:function``."""
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    entries = (line.split("=", 1) for line in cfg["options.entry_points"]["console_scripts"].splitlines() if "=" in line)
    return {name.strip(): target.strip() for name, target in entries}


def test_the_docs_are_there():
    assert (ROOT / "docs").is_dir() and len(PAGES) > 3, PAGES


def test_readme_is_a_door():
    lines = README.read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines: move detail into docs/"
    linked = {target.partition("#")[0] for target in LINK.findall(_prose(README.read_text()))}
    assert {f"docs/{p.name}" for p in PAGES if p.parent.name == "docs"} <= linked, "a docs/ page README does not list"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page):
    assert _broken_links(page) == []


def test_the_link_check_catches_a_broken_link(tmp_path, monkeypatch):
    """The check itself can fail: a missing file and a missing heading are both reported."""
    (tmp_path / "a.md").write_text("# Real heading\n\n[ok](#real-heading) [gone](b.md) [bad](#no-such-heading)\n"
                                   "`[in code](c.md)` and [web](https://example.org/x.md)\n")
    page = tmp_path / "a.md"
    assert anchors(page) == {"real-heading"}
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert _broken_links(page) == ["a.md: b.md (no such file)", "a.md: #no-such-heading (no such heading in a.md)"]


def test_slugs_follow_github():
    assert slug("Table 8 row → exact commands") == "table-8-row--exact-commands"
    assert slug("`train.compile` on CPUs") == "traincompile-on-cpus"
    assert slug("Image experiments (the paper's Tables 1–7)") == "image-experiments-the-papers-tables-17"


def test_every_named_command_is_a_console_script_and_its_help_works():
    scripts = console_scripts()
    named = {f"dfssat-{m}" for page in PAGES for m in SCRIPT.findall(page.read_text())}
    assert named - set(scripts) == set(), "named in the docs but not a console script in setup.cfg"
    # One interpreter for all: each script's function runs as the installed script would, with argv [name, --help].
    code = (
        "import contextlib, importlib, io, json, sys\n"
        f"scripts = {json.dumps(scripts)}\n"
        "codes = {}\n"
        "for name, target in scripts.items():\n"
        "    module, _, function = target.partition(':')\n"
        "    sys.argv, out = [name, '--help'], io.StringIO()\n"
        "    try:\n"
        "        with contextlib.redirect_stdout(out):\n"
        "            getattr(importlib.import_module(module), function)()\n"
        "        codes[name] = 'returned without exiting'\n"
        "    except SystemExit as e:\n"
        "        codes[name] = e.code if 'usage:' in out.getvalue() else f'exit {e.code}, no usage printed'\n"
        "print(json.dumps(codes))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    codes = json.loads(done.stdout.strip().splitlines()[-1])
    assert codes == {name: 0 for name in scripts}, done.stderr[-3000:]


def test_every_make_target_named_exists():
    makefile = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([\w-]+)\s*:(?!=)", makefile, re.M))
    named = {t for page in PAGES for t in MAKE.findall(_code(page.read_text()))}
    assert "demo" in named and "test" in named
    assert named - targets == set(), f"Makefile targets: {sorted(targets)}"
