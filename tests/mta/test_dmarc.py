"""DMARC record parsing, organizational domains and alignment (RFC 7489), pure."""

from __future__ import annotations

from mta.dmarc import DMARCResult, aligned, evaluate, org_domain, parse


class TXT:
    def __init__(self, records: dict[str, list[str]]) -> None:
        self.records = records

    def txt(self, name: str) -> list[str]:
        return self.records.get(name, [])


def test_org_domain() -> None:
    """Ensure the organizational domain approximation keeps registrable names."""
    assert org_domain("mail.news.example.com") == "example.com"
    assert org_domain("a.b.example.co.uk") == "example.co.uk"
    assert org_domain("example.com") == "example.com"


def test_parse() -> None:
    """Ensure records parse with defaults, and non-records are ignored (§6.3, §6.6.3)."""
    record = parse("v=DMARC1; p=quarantine; sp=reject; adkim=s; pct=50")
    assert record is not None
    assert (record.p, record.sp, record.adkim, record.aspf, record.pct) == (
        "quarantine", "reject", "s", "r", 50)  # fmt: skip
    assert parse("v=spf1 -all") is None
    assert parse("v=DMARC1; p=bogus") is None
    fallback = parse("v=DMARC1; p=bogus; rua=mailto:x@example.com")
    assert fallback is not None and fallback.p == "none"


def test_alignment_modes() -> None:
    """Ensure relaxed alignment accepts a subdomain and strict does not (§3.1)."""
    assert aligned("mail.example.com", "example.com", "r")
    assert not aligned("mail.example.com", "example.com", "s")
    assert not aligned("example.net", "example.com", "r")


def test_evaluate_uses_organizational_record_and_sp() -> None:
    """Ensure a subdomain without a record falls back to the org record and its sp= policy."""
    dns = TXT({"_dmarc.example.com": ["v=DMARC1; p=none; sp=reject"]})
    outcome = evaluate(dns, "news.example.com", spf_pass_domain=None, dkim_pass_domains=[])
    assert (outcome.result, outcome.policy, outcome.reject) == (DMARCResult.FAIL, "reject", True)
    passed = evaluate(dns, "news.example.com", spf_pass_domain="bounce.example.com",
                      dkim_pass_domains=[])  # fmt: skip
    assert (passed.result, passed.aligned) == (DMARCResult.PASS, "spf")
    assert evaluate(TXT({}), "x.example", spf_pass_domain=None,
                    dkim_pass_domains=[]).result is DMARCResult.NONE  # fmt: skip
