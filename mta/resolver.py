"""DNS for the mail path: one configured dnspython resolver, answers as plain values.

Lookups are blocking; callers run them in worker threads. ``ResolverSettings``
names the nameservers and port (empty: the system's ``resolv.conf``), which
is how tests point Mailward at a DNS server of their own on 127.0.0.1.

Errors are mapped to what SPF, DMARC and RFC 5321 §5.1 distinguish:
NXDOMAIN and "no records of that type" are empty answers (``void`` in RFC
7208 §4.6.4 terms), while timeouts and SERVFAIL are ``DNSTemporaryError``.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import dkim
import dns.exception
import dns.name
import dns.rdatatype
import dns.resolver
import dns.reversename


@dataclass(frozen=True, slots=True)
class ResolverSettings:
    nameservers: tuple[str, ...] = ()  # empty: the system resolver configuration
    port: int = 53
    timeout_seconds: float = 5.0  # per lookup, all retries included


class DNSTemporaryError(Exception):
    """The answer could not be had now (timeout, SERVFAIL): try again later."""


class NoSuchDomain(Exception):
    """NXDOMAIN: the name does not exist (RFC 5321 §5.1 makes that permanent)."""


@dataclass(frozen=True, slots=True)
class MXRecord:
    preference: int
    host: str  # "" for the null MX of RFC 7505


class DNS:
    def __init__(self, settings: ResolverSettings | None = None) -> None:
        settings = settings or ResolverSettings()
        if settings.nameservers:
            resolver = dns.resolver.Resolver(configure=False)
            resolver.nameservers = list(settings.nameservers)
        else:
            resolver = dns.resolver.Resolver()
        resolver.port = settings.port
        resolver.lifetime = settings.timeout_seconds
        resolver.timeout = min(2.0, settings.timeout_seconds)
        self.resolver = resolver

    def _query(self, name: str, rdtype: str, *, strict: bool = False) -> list[object]:
        try:
            answer = self.resolver.resolve(name, rdtype, search=False)
        except dns.resolver.NXDOMAIN as exc:
            if strict:
                raise NoSuchDomain(name) from exc
            return []
        except dns.resolver.NoAnswer:
            return []
        except (dns.name.NameTooLong, dns.name.EmptyLabel):
            return []  # a malformed name cannot exist
        except dns.exception.DNSException as exc:  # timeout, SERVFAIL, no nameserver answered
            raise DNSTemporaryError(f"{rdtype} {name}: {exc.__class__.__name__}") from exc
        return list(answer)

    def txt(self, name: str) -> list[str]:
        out = []
        for rdata in self._query(name, "TXT"):
            strings = rdata.strings  # type: ignore[attr-defined]
            out.append(b"".join(strings).decode("utf-8", "replace"))
        return out

    def addresses(self, name: str, *, ipv6: bool = True) -> list[str]:
        found = [str(r) for r in self._query(name, "A")]
        if ipv6:
            found += [str(r) for r in self._query(name, "AAAA")]
        return found

    def a(self, name: str) -> list[str]:
        return [str(r) for r in self._query(name, "A")]

    def aaaa(self, name: str) -> list[str]:
        return [str(r) for r in self._query(name, "AAAA")]

    def mx(self, name: str, *, strict: bool = False) -> list[MXRecord]:
        out = []
        for rdata in self._query(name, "MX", strict=strict):
            host = str(rdata.exchange).rstrip(".").lower()  # type: ignore[attr-defined]
            out.append(MXRecord(int(rdata.preference), host))  # type: ignore[attr-defined]
        return out

    def ptr(self, ip: str) -> list[str]:
        name = dns.reversename.from_address(str(ipaddress.ip_address(ip)))
        return [str(r).rstrip(".").lower() for r in self._query(name.to_text(), "PTR")]

    def dkim_txt(self, name: bytes | str, timeout: float = 5) -> bytes | None:
        """The ``dnsfunc`` dkimpy calls for a key record."""
        text = name.decode() if isinstance(name, bytes) else name
        try:
            records = self.txt(text.rstrip("."))
        except DNSTemporaryError as exc:
            raise dkim.DnsTimeoutError(str(exc)) from exc
        return records[0].encode() if records else None

