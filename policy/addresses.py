"""Mail addresses as values, parsed once at the edge.

Matching is case-insensitive on both parts: RFC 5321 §2.4 lets the local part
be case-sensitive, but every mainstream server folds it, and two mailboxes that
differ only in case would be a phishing gift.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# RFC 5321 §4.5.3.1.1-2: local part at most 64 octets, domain at most 255.
MAX_LOCAL_PART = 64
MAX_DOMAIN = 255

_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_DOT_ATOM = re.compile(rf"^{_ATOM}(?:\.{_ATOM})*$")
# RFC 6531 §3.3: with SMTPUTF8, atext and qtext also admit non-ASCII characters.
_ATOM_UTF8 = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-\u0080-\U0010ffff]+"
_DOT_ATOM_UTF8 = re.compile(rf"^{_ATOM_UTF8}(?:\.{_ATOM_UTF8})*$")
# RFC 5321 §4.1.2 Quoted-string: printable qtext or backslash pairs, never CR,
# LF or other controls (they would let a stored address inject SMTP commands).
# Non-ASCII only reaches this test when SMTPUTF8 allowed it.
_QUOTED = re.compile(r'^"(?:[\x20\x21\x23-\x5b\x5d-\x7e\u0080-\U0010ffff]|\\[\x20-\x7e])*"$')
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


class AddressError(ValueError):
    pass


@dataclass(frozen=True, slots=True, order=True)
class Address:
    local: str
    domain: str

    def __str__(self) -> str:
        return f"{self.local}@{self.domain}"

    @classmethod
    def parse(cls, text: str, *, utf8: bool = False) -> Address:
        text = text.strip()
        if text.startswith("<") and text.endswith(">"):
            text = text[1:-1]
        local, sep, domain = text.rpartition("@")
        if not sep or not local or not domain:
            raise AddressError(f"not an address: {text!r}")
        if not utf8 and not text.isascii():
            raise AddressError("non-ASCII address without SMTPUTF8")
        local = local.lower()
        domain = normalize_domain(domain)
        if len(local.encode()) > MAX_LOCAL_PART:
            raise AddressError("local part longer than 64 octets")
        if not (_QUOTED.match(local) or (_DOT_ATOM_UTF8 if utf8 else _DOT_ATOM).match(local)):
            raise AddressError(f"invalid local part: {local!r}")
        return cls(local, domain)


def normalize_domain(domain: str) -> str:
    """Lower-case a domain and check its labels (IDNs are kept as A-labels)."""
    domain = domain.strip().rstrip(".").lower()
    if not domain.isascii():
        try:
            domain = domain.encode("idna").decode("ascii")
        except UnicodeError as exc:
            raise AddressError(f"invalid domain: {domain!r}") from exc
    if len(domain) > MAX_DOMAIN or "." not in domain:
        raise AddressError(f"invalid domain: {domain!r}")
    if not all(_LABEL.match(label) for label in domain.split(".")):
        raise AddressError(f"invalid domain: {domain!r}")
    return domain


def parse_address(text: str) -> Address:
    return Address.parse(text)
