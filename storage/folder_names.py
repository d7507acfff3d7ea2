"""IMAP folder names and their Maildir++ directory names.

The IMAP hierarchy delimiter is ".", as in Dovecot's and Courier's Maildir++
layout, so ``Archive.2024`` is stored as the directory ``.Archive.2024``.
Directory names use modified UTF-7 (RFC 3501 §5.1.3) like other Maildir++
servers, so a folder moved in from Dovecot keeps its name.
"""

from __future__ import annotations

import base64

DELIMITER = "."
MAX_NAME_OCTETS = 255  # a directory name on every common filesystem
SPECIAL_USE = {"Sent": "\\Sent", "Drafts": "\\Drafts", "Trash": "\\Trash", "Junk": "\\Junk",
               "Archive": "\\Archive"}  # fmt: skip


class FolderNameError(ValueError):
    pass


def _b64(text: str) -> str:
    raw = text.encode("utf-16-be")
    return base64.b64encode(raw).decode("ascii").rstrip("=").replace("/", ",")


def encode_mutf7(name: str) -> str:
    out: list[str] = []
    pending = ""
    for ch in name:
        if 0x20 <= ord(ch) <= 0x7E:
            if pending:
                out.append("&" + _b64(pending) + "-")
                pending = ""
            out.append("&-" if ch == "&" else ch)
        else:
            pending += ch
    if pending:
        out.append("&" + _b64(pending) + "-")
    return "".join(out)


def decode_mutf7(text: str) -> str:
    """The inverse of ``encode_mutf7``; raises FolderNameError on malformed input."""
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch != "&":
            out.append(ch)
            i += 1
            continue
        end = text.find("-", i)
        if end < 0:
            raise FolderNameError(f"unterminated modified UTF-7 in {text!r}")
        chunk = text[i + 1 : end]
        if not chunk:
            out.append("&")
        else:
            b64 = chunk.replace(",", "/")
            try:
                raw = base64.b64decode(b64 + "=" * (-len(b64) % 4), validate=True)
                out.append(raw.decode("utf-16-be"))
            except (ValueError, UnicodeDecodeError) as exc:
                raise FolderNameError(f"invalid modified UTF-7 in {text!r}") from exc
        i = end + 1
    return "".join(out)


def folder_name(directory: str) -> str | None:
    """The IMAP name of a Maildir++ folder directory (``.Sent`` → ``Sent``), or None."""
    if not directory.startswith(".") or directory in (".", ".."):
        return None
    try:
        return validate(decode_mutf7(directory[1:]))
    except FolderNameError:
        return None


def validate(name: str) -> str:
    """Check a decoded IMAP folder name; return it with INBOX case-normalized."""
    if not name or name.startswith(DELIMITER) or name.endswith(DELIMITER):
        raise FolderNameError("empty folder name or empty hierarchy level")
    parts = name.split(DELIMITER)
    if any(p in ("", ".", "..") for p in parts):
        raise FolderNameError("empty or relative hierarchy level")
    if any(ch in name for ch in "/\\\x00") or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in name):
        raise FolderNameError("folder names cannot contain / \\ or control characters")
    if parts[0].upper() == "INBOX":
        parts[0] = "INBOX"
    name = DELIMITER.join(parts)
    if len(directory_name(name).encode()) > MAX_NAME_OCTETS:
        raise FolderNameError("folder name too long")
    return name


def directory_name(name: str) -> str:
    """``INBOX`` is the Maildir root itself; every other folder is ``.<mUTF-7 name>``."""
    return "" if name == "INBOX" else "." + encode_mutf7(name)
