"""The Maildir side of the IMAP index: finding, renaming and copying message files.

A message file keeps its base name for life (``<secs>.M<usec>P<pid>Q<n>.<host>``
with ``,S=`` and ``,W=`` size tags) while its name changes with its flags
(``:2,FS``) and it moves from ``new/`` to ``cur/``. The index remembers the
names it last saw; these helpers fall back to looking a file up by its base
name when another Maildir tool renamed it since. Every function blocks.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import time
from collections.abc import Sequence
from os import stat_result
from pathlib import Path

from storage import maildir
from storage.mailindex_state import list_dir, split_name

_SIZE_TAGS = re.compile(r",[SW]=\d+")
_copy_counter = itertools.count(1)

OnDisk = dict[str, tuple[str, str, frozenset[str]]]  # base → (subdir, file name, system flags)


def scan(path: Path, subdirs: Sequence[str] = ("new", "cur")) -> OnDisk:
    """base name → (subdir, file name, system flags) for every message file."""
    found: OnDisk = {}
    for sub in subdirs:
        for name in list_dir(path / sub):
            base, flags = split_name(name)
            found[base] = (sub, name, flags)
    return found


def sizes(base: str, path: Path, stat: stat_result) -> tuple[int, int]:
    """(octets on disk, RFC822.SIZE) from the name's size tags, else from the file."""
    size = maildir.size_in_name(base)
    if size is None:
        size = stat.st_size
    wire = maildir.size_in_name(base, "W")
    if wire is None:
        wire = maildir.crlf_size(path.read_bytes())
    return size, wire


def locate(path: Path, base: str, likely: str) -> Path | None:
    """The file of a message: ``cur/likely`` if there, else found by its base name."""
    candidate = path / "cur" / likely
    if candidate.exists():
        return candidate
    found = scan(path).get(base)
    return None if found is None else path / found[0] / found[1]


def rename(path: Path, base: str, source: str, target: str) -> None:
    """Give a message file in cur/ its new flags (looked up again if it moved)."""
    if source == target:
        return
    cur = path / "cur"
    try:
        os.rename(cur / source, cur / target)
        return
    except FileNotFoundError:
        pass
    found = scan(path, ("cur",)).get(base)
    if found is not None and found[1] != target:
        os.rename(cur / found[1], cur / target)


def unique_base(base: str) -> str:
    """A fresh Maildir base name for a copy, keeping the S= and W= size tags."""
    tags = "".join(m.group(0) for m in _SIZE_TAGS.finditer(base))
    now = time.time()
    host = base.split(".", 3)[2].split(",")[0] if base.count(".") >= 2 else "copy"
    return f"{int(now)}.M{int(now % 1 * 1e6):06d}P{os.getpid()}C{next(_copy_counter)}.{host}{tags}"


def link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)  # Maildir files are immutable: a hard link is a copy
    except OSError:
        shutil.copyfile(source, target)
