"""A compact SPF evaluator: RFC 7208 ``check_host()`` over an injected resolver.

No maintained SPF library exists on PyPI (pyspf's last release is from
2020), so this implements the parts receivers rely on: the mechanisms
``all include a mx ptr ip4 ip6 exists``, the ``redirect`` modifier, macros
(§7, without the ``exp`` explanation string), and the processing limits of
§4.6.4: at most 10 DNS-querying terms, at most 2 void lookups, at most 10 MX
or PTR names per term. Results are the seven of §2.6.
"""

from __future__ import annotations

import enum
import ipaddress
import re
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import quote

from mta.resolver import DNSTemporaryError, MXRecord

MAX_DNS_TERMS = 10  # RFC 7208 §4.6.4
MAX_VOID_LOOKUPS = 2  # RFC 7208 §4.6.4
MAX_NAMES_PER_TERM = 10  # RFC 7208 §4.6.4 (MX and PTR)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class SPFResolver(Protocol):
    def txt(self, name: str) -> list[str]: ...
    def a(self, name: str) -> list[str]: ...
    def aaaa(self, name: str) -> list[str]: ...
    def mx(self, name: str) -> list[MXRecord]: ...
    def ptr(self, ip: str) -> list[str]: ...


class SPFResult(enum.StrEnum):
    PASS = "pass"
    FAIL = "fail"
    SOFTFAIL = "softfail"
    NEUTRAL = "neutral"
    NONE = "none"
    TEMPERROR = "temperror"
    PERMERROR = "permerror"


QUALIFIERS = {"+": SPFResult.PASS, "-": SPFResult.FAIL, "~": SPFResult.SOFTFAIL,
              "?": SPFResult.NEUTRAL}  # fmt: skip


@dataclass(frozen=True, slots=True)
class SPFOutcome:
    result: SPFResult
    domain: str
    mechanism: str = ""  # the term that matched, or why there was no answer


class _Error(Exception):
    def __init__(self, result: SPFResult, why: str) -> None:
        super().__init__(why)
        self.result = result


@dataclass
class _Context:
    dns: SPFResolver
    ip: IPAddress
    sender: str
    helo: str
    lookups: int = 0
    voids: int = 0
    seen: set[str] = field(default_factory=set)

    def count(self) -> None:
        self.lookups += 1
        if self.lookups > MAX_DNS_TERMS:
            raise _Error(SPFResult.PERMERROR, "too many DNS lookups")

    def query(self, kind: str, name: str) -> list:
        try:
            answer = getattr(self.dns, kind)(name)
        except DNSTemporaryError as exc:
            raise _Error(SPFResult.TEMPERROR, str(exc)) from exc
        if not answer:
            self.voids += 1
            if self.voids > MAX_VOID_LOOKUPS:
                raise _Error(SPFResult.PERMERROR, "too many void lookups")
        return list(answer)


def check_host(
    dns: SPFResolver, ip: str, domain: str, sender: str, helo: str = ""
) -> SPFOutcome:
    """The SPF result for ``ip`` sending as ``sender`` (whose domain is ``domain``)."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return SPFOutcome(SPFResult.NONE, domain, "no client address")
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    if "@" not in sender:
        sender = f"postmaster@{domain}"  # §4.3: HELO identity, or an empty local part
    ctx = _Context(dns, address, sender, helo or domain)
    try:
        result, term = _evaluate(ctx, domain.lower().rstrip("."))
    except _Error as exc:
        return SPFOutcome(exc.result, domain, str(exc))
    return SPFOutcome(result, domain, term)


def _record(ctx: _Context, domain: str) -> str | None:
    try:
        texts = ctx.dns.txt(domain)
    except DNSTemporaryError as exc:
        raise _Error(SPFResult.TEMPERROR, str(exc)) from exc
    records = [t for t in texts if t.lower() == "v=spf1" or t.lower().startswith("v=spf1 ")]
    if len(records) > 1:
        raise _Error(SPFResult.PERMERROR, "more than one SPF record")  # §4.5
    return records[0] if records else None


_MODIFIER = re.compile(r"^([a-z][a-z0-9_.-]*)=(.*)$", re.IGNORECASE)
_MECHANISM = re.compile(r"^([+\-~?]?)([a-z][a-z0-9_.-]*)(?:[:](.*?))?((?:/\d+)?(?://\d+)?)$",
                        re.IGNORECASE)  # fmt: skip


def _evaluate(ctx: _Context, domain: str) -> tuple[SPFResult, str]:
    if domain in ctx.seen:
        raise _Error(SPFResult.PERMERROR, f"loop through {domain}")
    ctx.seen.add(domain)
    try:
        record = _record(ctx, domain)
        if record is None:
            return SPFResult.NONE, "no SPF record"
        redirect: str | None = None
        for term in record.split()[1:]:
            modifier = _MODIFIER.match(term)
            if modifier and ":" not in modifier.group(1):
                if modifier.group(1).lower() == "redirect":
                    if redirect is not None:
                        raise _Error(SPFResult.PERMERROR, "two redirect modifiers")
                    redirect = modifier.group(2)
                continue  # exp= and unknown modifiers are ignored (§6)
            match = _MECHANISM.match(term)
            if match is None:
                raise _Error(SPFResult.PERMERROR, f"bad term {term!r}")
            qualifier, name, arg, cidr = match.groups()
            if _matches(ctx, domain, name.lower(), arg, cidr or ""):
                return QUALIFIERS[qualifier or "+"], term
        if redirect is not None:
            ctx.count()
            target = _expand(ctx, redirect, domain)
            result, term = _evaluate(ctx, target)
            if result is SPFResult.NONE:
                raise _Error(SPFResult.PERMERROR, f"redirect to {target} has no SPF record")
            return result, term
        return SPFResult.NEUTRAL, "no match"  # §4.7
    finally:
        ctx.seen.discard(domain)


def _cidr(cidr: str) -> tuple[int, int]:
    v4, _, v6 = cidr.partition("//")
    four = int(v4[1:]) if v4.startswith("/") else 32
    six = int(v6) if v6 else 128
    if four > 32 or six > 128:
        raise _Error(SPFResult.PERMERROR, f"bad prefix length {cidr}")
    return four, six


def _in(ctx: _Context, addresses: list[str], cidr: str) -> bool:
    four, six = _cidr(cidr)
    prefix = four if ctx.ip.version == 4 else six
    network = ipaddress.ip_network(f"{ctx.ip}/{prefix}", strict=False)
    return any(ipaddress.ip_address(a) in network for a in addresses)


def _addresses(ctx: _Context, name: str) -> list[str]:
    return ctx.query("a" if ctx.ip.version == 4 else "aaaa", name)


def _matches(ctx: _Context, domain: str, name: str, arg: str | None, cidr: str) -> bool:
    if name == "all":
        return True
    if name in ("ip4", "ip6"):
        if not arg:
            raise _Error(SPFResult.PERMERROR, f"{name} without a network")
        try:
            network = ipaddress.ip_network(arg + cidr, strict=False)
        except ValueError as exc:
            raise _Error(SPFResult.PERMERROR, f"bad network {arg}{cidr}") from exc
        return network.version == ctx.ip.version and ctx.ip in network
    target = _expand(ctx, arg, domain) if arg else domain
    if name == "include":
        if not arg:
            raise _Error(SPFResult.PERMERROR, "include without a domain")
        ctx.count()
        result, _ = _evaluate(ctx, target)
        if result in (SPFResult.TEMPERROR, SPFResult.PERMERROR):
            raise _Error(result, f"include:{target} gave {result}")
        if result is SPFResult.NONE:
            raise _Error(SPFResult.PERMERROR, f"include:{target} has no SPF record")
        return result is SPFResult.PASS
    if name == "a":
        ctx.count()
        return _in(ctx, _addresses(ctx, target), cidr)
    if name == "mx":
        ctx.count()
        hosts = ctx.query("mx", target)
        if len(hosts) > MAX_NAMES_PER_TERM:
            raise _Error(SPFResult.PERMERROR, "too many MX names")
        return any(_in(ctx, _addresses(ctx, mx.host), cidr) for mx in hosts if mx.host)
    if name == "ptr":
        ctx.count()
        for host in ctx.query("ptr", str(ctx.ip))[:MAX_NAMES_PER_TERM]:
            if (host == target or host.endswith("." + target)) and str(ctx.ip) in _addresses(
                ctx, host
            ):
                return True
        return False
    if name == "exists":
        if not arg:
            raise _Error(SPFResult.PERMERROR, "exists without a domain")
        ctx.count()
        return bool(ctx.query("a", target))
    raise _Error(SPFResult.PERMERROR, f"unknown mechanism {name}")


_MACRO = re.compile(r"%\{([slodiphcrtv])(\d*)(r?)([.\-+,/_=]*)\}|%%|%_|%-", re.IGNORECASE)


def _expand(ctx: _Context, spec: str, domain: str) -> str:
    """RFC 7208 §7 macro expansion of a domain-spec."""

    def value(letter: str) -> str:
        local, _, sender_domain = ctx.sender.rpartition("@")
        if letter == "s":
            return ctx.sender
        if letter == "l":
            return local or "postmaster"
        if letter == "o":
            return sender_domain
        if letter == "d":
            return domain
        if letter == "i":
            if ctx.ip.version == 4:
                return str(ctx.ip)
            return ".".join(ctx.ip.exploded.replace(":", ""))
        if letter == "v":
            return "in-addr" if ctx.ip.version == 4 else "ip6"
        if letter == "h":
            return ctx.helo
        return "unknown"  # p: validated names are not looked up (§7.3 discourages it)

    def replace(match: re.Match[str]) -> str:
        text = match.group(0)
        if text == "%%":
            return "%"
        if text == "%_":
            return " "
        if text == "%-":
            return "%20"
        letter, digits, reverse, delimiters = match.groups()
        parts = re.split("[" + re.escape(delimiters or ".") + "]", value(letter.lower()))
        if reverse:
            parts.reverse()
        if digits:
            if int(digits) == 0:
                raise _Error(SPFResult.PERMERROR, "macro keeps zero labels")
            parts = parts[-int(digits) :]
        out = ".".join(parts)
        return quote(out, safe="") if letter.isupper() else out

    if "%" in _MACRO.sub("", spec):
        raise _Error(SPFResult.PERMERROR, f"bad macro in {spec!r}")
    expanded = _MACRO.sub(replace, spec).rstrip(".")
    while len(expanded) > 253 and "." in expanded:  # §7.3: drop labels from the left
        expanded = expanded.split(".", 1)[1]
    return expanded.lower()
