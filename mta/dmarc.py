"""DMARC (RFC 7489): the sender domain's policy and whether SPF or DKIM aligns with From.

The policy record is looked up at ``_dmarc.<From domain>`` and, failing
that, at the organizational domain's (§6.6.3). DMARC passes when an SPF
pass or a DKIM pass is *aligned* with the From domain: equal in strict mode,
sharing the organizational domain in relaxed mode (§3.1).

The organizational domain properly needs the Public Suffix List (§3.2),
which is not shipped here; ``org_domain`` approximates it with the last two
labels, or three under the common second-level registries (``co.uk``,
``com.au``…). A deployment that needs exactness can swap the function.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from mta.resolver import DNSTemporaryError

# Second-level labels under which registrations happen one level deeper.
_SECOND_LEVEL = frozenset({"co", "com", "net", "org", "gov", "ac", "edu", "ne", "or", "go"})


class TxtResolver(Protocol):
    def txt(self, name: str) -> list[str]: ...


class DMARCResult(enum.StrEnum):
    PASS = "pass"
    FAIL = "fail"
    NONE = "none"  # no policy published
    TEMPERROR = "temperror"
    PERMERROR = "permerror"


@dataclass(frozen=True, slots=True)
class DMARCRecord:
    p: str = "none"
    sp: str | None = None
    adkim: str = "r"
    aspf: str = "r"
    pct: int = 100


@dataclass(frozen=True, slots=True)
class DMARCOutcome:
    result: DMARCResult
    from_domain: str
    policy: str = "none"  # the policy that applies to this From domain
    aligned: str | None = None  # "dkim" or "spf" when it passed

    @property
    def reject(self) -> bool:
        return self.result is DMARCResult.FAIL and self.policy == "reject"


def org_domain(domain: str) -> str:
    labels = domain.lower().rstrip(".").split(".")
    if len(labels) >= 3 and len(labels[-1]) == 2 and labels[-2] in _SECOND_LEVEL:
        return ".".join(labels[-3:])
    return ".".join(labels[-2:])


def parse(text: str) -> DMARCRecord | None:
    """A record, or None if this TXT is not a DMARC record (§6.3, §6.6.3)."""
    tags: dict[str, str] = {}
    for part in text.split(";"):
        key, sep, value = part.partition("=")
        if sep:
            tags.setdefault(key.strip().lower(), value.strip())
    if tags.get("v") != "DMARC1" or not text.lstrip().startswith("v"):
        return None
    policies = ("none", "quarantine", "reject")
    p = tags.get("p", "").lower()
    if p not in policies:
        # §6.6.3: an invalid or missing p= with a valid rua= is treated as p=none.
        if "rua" not in tags:
            return None
        p = "none"
    sp = tags.get("sp", "").lower()
    try:
        pct = max(0, min(100, int(tags.get("pct", "100"))))
    except ValueError:
        pct = 100
    return DMARCRecord(
        p=p,
        sp=sp if sp in policies else None,
        adkim="s" if tags.get("adkim", "r").lower() == "s" else "r",
        aspf="s" if tags.get("aspf", "r").lower() == "s" else "r",
        pct=pct,
    )


def lookup(dns: TxtResolver, from_domain: str) -> tuple[DMARCRecord | None, bool]:
    """(record, found at the organizational domain); ``DNSTemporaryError`` propagates."""
    for name, at_org in ((from_domain, False), (org_domain(from_domain), True)):
        if at_org and name == from_domain:
            break
        records = [r for r in (parse(t) for t in dns.txt(f"_dmarc.{name}")) if r is not None]
        if len(records) == 1:
            return records[0], at_org
    return None, False


def aligned(a: str, b: str, mode: str) -> bool:
    a, b = a.lower().rstrip("."), b.lower().rstrip(".")
    return a == b if mode == "s" else org_domain(a) == org_domain(b)


def evaluate(
    dns: TxtResolver,
    from_domain: str,
    *,
    spf_pass_domain: str | None,
    dkim_pass_domains: Sequence[str],
) -> DMARCOutcome:
    try:
        record, at_org = lookup(dns, from_domain)
    except DNSTemporaryError:
        return DMARCOutcome(DMARCResult.TEMPERROR, from_domain)
    if record is None:
        return DMARCOutcome(DMARCResult.NONE, from_domain)
    policy = record.sp if at_org and record.sp else record.p
    if any(aligned(d, from_domain, record.adkim) for d in dkim_pass_domains):
        return DMARCOutcome(DMARCResult.PASS, from_domain, policy, "dkim")
    if spf_pass_domain and aligned(spf_pass_domain, from_domain, record.aspf):
        return DMARCOutcome(DMARCResult.PASS, from_domain, policy, "spf")
    return DMARCOutcome(DMARCResult.FAIL, from_domain, policy)
