"""SPF check_host() (RFC 7208) over an in-memory resolver: no sockets, no clock."""

from __future__ import annotations

import pytest

from mta.resolver import DNSTemporaryError, MXRecord
from mta.spf import SPFResult, check_host


class FakeDNS:
    def __init__(self, records: dict[tuple[str, str], list]) -> None:
        self.records = records
        self.asked: list[tuple[str, str]] = []

    def _get(self, kind: str, name: str) -> list:
        self.asked.append((kind, name))
        value = self.records.get((kind, name), [])
        if value == "SERVFAIL":
            raise DNSTemporaryError(name)
        return list(value)

    def txt(self, name: str) -> list[str]:
        return self._get("txt", name)

    def a(self, name: str) -> list[str]:
        return self._get("a", name)

    def aaaa(self, name: str) -> list[str]:
        return self._get("aaaa", name)

    def mx(self, name: str) -> list[MXRecord]:
        return self._get("mx", name)

    def ptr(self, ip: str) -> list[str]:
        return self._get("ptr", ip)


def _check(records: dict, ip: str = "192.0.2.10", domain: str = "example.com") -> SPFResult:
    return check_host(FakeDNS(records), ip, domain, f"user@{domain}", "mx.client.example").result


@pytest.mark.parametrize(
    ("record", "ip", "expected"),
    [
        ("v=spf1 ip4:192.0.2.0/24 -all", "192.0.2.10", SPFResult.PASS),
        ("v=spf1 ip4:192.0.2.0/24 -all", "198.51.100.1", SPFResult.FAIL),
        ("v=spf1 ip4:192.0.2.0/24 ~all", "198.51.100.1", SPFResult.SOFTFAIL),
        ("v=spf1 ?all", "198.51.100.1", SPFResult.NEUTRAL),
        ("v=spf1 ip6:2001:db8::/32 -all", "2001:db8::25", SPFResult.PASS),
        ("v=spf1 ip4:192.0.2.10 -all", "::ffff:192.0.2.10", SPFResult.PASS),
        ("v=spf1 a/24 -all", "192.0.2.99", SPFResult.PASS),
        ("v=spf1 mx -all", "198.51.100.7", SPFResult.PASS),
        ("v=spf1 include:_spf.provider.example -all", "203.0.113.5", SPFResult.PASS),
        ("v=spf1 redirect=_spf.provider.example", "203.0.113.5", SPFResult.PASS),
        ("v=spf1 redirect=_spf.provider.example", "192.0.2.1", SPFResult.FAIL),
        ("v=spf1 exists:%{i}.allow.example -all", "192.0.2.10", SPFResult.PASS),
        ("v=spf1 exists:%{ir}.%{v}.allow.example -all", "192.0.2.10", SPFResult.PASS),
        ("v=spf1 -ip4:192.0.2.10 +all", "192.0.2.10", SPFResult.FAIL),
        ("v=spf1 ip4:192.0.2.0/24", "198.51.100.1", SPFResult.NEUTRAL),
        ("v=spf1 frobnicate:x -all", "192.0.2.10", SPFResult.PERMERROR),
        ("v=spf1 include:nothing.example -all", "192.0.2.10", SPFResult.PERMERROR),
    ],
)
def test_mechanisms(record: str, ip: str, expected: SPFResult) -> None:
    """Ensure each mechanism and modifier gives the result RFC 7208 §5-6 prescribes."""
    records = {
        ("txt", "example.com"): [record, "google-site-verification=abc"],
        ("a", "example.com"): ["192.0.2.1"],
        ("mx", "example.com"): [MXRecord(10, "mx1.example.com")],
        ("a", "mx1.example.com"): ["198.51.100.7"],
        ("txt", "_spf.provider.example"): ["v=spf1 ip4:203.0.113.0/24 -all"],
        ("a", "192.0.2.10.allow.example"): ["127.0.0.2"],
        ("a", "10.2.0.192.in-addr.allow.example"): ["127.0.0.2"],
    }
    assert _check(records, ip) is expected


def test_no_record_is_none_and_two_records_permerror() -> None:
    """Ensure no SPF record gives none and two give permerror (§4.5)."""
    assert _check({}) is SPFResult.NONE
    two = {("txt", "example.com"): ["v=spf1 -all", "v=spf1 +all"]}
    assert _check(two) is SPFResult.PERMERROR


def test_dns_lookup_limit() -> None:
    """Ensure more than ten DNS-querying terms is a permerror (§4.6.4)."""
    chain = {("txt", "example.com"): ["v=spf1 include:l0.example -all"]}
    for n in range(11):
        chain[("txt", f"l{n}.example")] = [f"v=spf1 include:l{n + 1}.example -all"]
    chain[("txt", "l11.example")] = ["v=spf1 +all"]
    assert _check(chain) is SPFResult.PERMERROR


def test_void_lookup_limit() -> None:
    """Ensure a third lookup with an empty answer is a permerror (§4.6.4)."""
    record = "v=spf1 a:v1.example a:v2.example a:v3.example -all"
    assert _check({("txt", "example.com"): [record]}) is SPFResult.PERMERROR
    record = "v=spf1 a:v1.example a:v2.example -all"
    assert _check({("txt", "example.com"): [record]}) is SPFResult.FAIL


def test_temporary_dns_failure() -> None:
    """Ensure a DNS failure gives temperror, not fail."""
    assert _check({("txt", "example.com"): "SERVFAIL"}) is SPFResult.TEMPERROR
    records = {("txt", "example.com"): ["v=spf1 a:broken.example -all"],
               ("a", "broken.example"): "SERVFAIL"}  # fmt: skip
    assert _check(records) is SPFResult.TEMPERROR


def test_include_loop_is_permerror() -> None:
    """Ensure a record that includes itself ends in permerror, not recursion."""
    loop = {("txt", "example.com"): ["v=spf1 include:example.com -all"]}
    assert _check(loop) is SPFResult.PERMERROR
