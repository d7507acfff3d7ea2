"""Inbound sender authentication: SPF, DKIM and DMARC, as a receiver checks them.

``InboundAuthenticator.check`` evaluates one message (blocking DNS; call it
from a worker thread) and returns an ``AuthVerdict``:

- SPF (RFC 7208) for the MAIL FROM domain, or the HELO name for the null
  sender (§2.3-2.4), via ``mta.spf``;
- every DKIM signature (RFC 6376) via dkimpy (``mta.dkim.verify``);
- DMARC (RFC 7489) for the From header domain: aligned SPF or DKIM pass.

The verdict renders the ``Authentication-Results`` header (RFC 8601) and a
short summary for the routing log. ``refusal`` is the pure decision the
inbound path applies: a DMARC fail with ``p=reject`` is refused when the
recipient domain honours it (the default), and mail whose From is a hosted
domain must pass DMARC whatever that domain publishes: our own users send
through authenticated submission, so anything else claiming to be them is a
spoof (DESIGN.md, "Delivery path").
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from email.parser import BytesHeaderParser
from email.utils import getaddresses

from mta import dkim, dmarc, spf
from mta.dkim import SignatureResult
from mta.dmarc import DMARCOutcome, DMARCResult
from mta.message import header_block
from mta.resolver import DNS, ResolverSettings
from mta.spf import SPFOutcome, SPFResult
from policy import replies
from policy.addresses import AddressError, normalize_domain
from policy.replies import SMTPReply
from policy.routing import Reason


@dataclass(frozen=True, slots=True)
class InboundAuthSettings:
    authserv_id: str  # RFC 8601 §2.5: our host name, as in our Received headers
    resolver: ResolverSettings = field(default_factory=ResolverSettings)
    # RFC 7489 §6.7 leaves enforcement to the receiver; default on, per domain
    # it can be turned off (``storage.models_outbound.DomainAuthPolicy``).
    reject_dmarc: bool = True
    refuse_hosted_spoofs: bool = True


@dataclass(frozen=True, slots=True)
class AuthVerdict:
    authserv_id: str
    spf: SPFOutcome
    spf_identity: str  # "smtp.mailfrom=…" or "smtp.helo=…"
    dkim: tuple[SignatureResult, ...]
    dmarc: DMARCOutcome | None  # None when the From domain could not be read
    from_domain: str | None

    @property
    def summary(self) -> str:
        dkim_result = _dkim_summary(self.dkim)
        dmarc_result = self.dmarc.result.value if self.dmarc else "permerror"
        return f"spf={self.spf.result.value} dkim={dkim_result} dmarc={dmarc_result}"

    def header(self) -> bytes:
        """The Authentication-Results field, folded, ending in CRLF (RFC 8601 §2.2)."""
        parts = [f"spf={self.spf.result.value} {self.spf_identity}"]
        if not self.dkim:
            parts.append("dkim=none")
        for sig in self.dkim:
            props = [f"header.d={sig.domain or 'unknown'}", f"header.s={sig.selector or 'unknown'}",
                     f"header.a={sig.algorithm or 'unknown'}"]
            if sig.b:
                props.append(f"header.b={sig.b}")  # RFC 6008: tells signatures apart
            parts.append(f"dkim={sig.result} " + " ".join(props))
        if self.dmarc is None:
            parts.append("dmarc=permerror (no usable From header)")
        else:
            published = self.dmarc.result is not DMARCResult.NONE
            policy = f" (p={self.dmarc.policy})" if published else ""
            parts.append(f"dmarc={self.dmarc.result.value}{policy} "
                         f"header.from={self.dmarc.from_domain}")  # fmt: skip
        text = f"Authentication-Results: {self.authserv_id};\r\n\t" + ";\r\n\t".join(parts)
        return (_safe(text) + "\r\n").encode()


def _dkim_summary(results: tuple[SignatureResult, ...]) -> str:
    if not results:
        return "none"
    return "pass" if any(r.passed for r in results) else results[0].result


def _safe(text: str) -> str:
    return "".join(ch for ch in text if ch.isprintable() or ch in "\r\n\t")


def from_domain(data: bytes) -> str | None:
    """The single From domain (RFC 7489 §6.6.1); None if absent, several or malformed."""
    headers = BytesHeaderParser().parsebytes(header_block(data) + b"\r\n\r\n")
    values = headers.get_all("From") or []
    domains = {addr.rpartition("@")[2] for _n, addr in getaddresses([str(v) for v in values])}
    if len(domains) != 1:
        return None
    try:
        return normalize_domain(domains.pop())
    except AddressError:
        return None


class InboundAuthenticator:
    def __init__(self, settings: InboundAuthSettings) -> None:
        self.settings = settings
        self.dns = DNS(settings.resolver)

    def check(self, *, client_ip: str | None, helo: str | None, mail_from: str,
              data: bytes) -> AuthVerdict:  # fmt: skip
        helo_name = (helo or "").strip().lower()
        if mail_from:
            spf_domain = mail_from.rpartition("@")[2].lower()
            identity = f"smtp.mailfrom={mail_from}"
        else:
            spf_domain, identity = helo_name, f"smtp.helo={helo_name or 'unknown'}"
        if client_ip and spf_domain:
            spf_outcome = spf.check_host(self.dns, client_ip, spf_domain, mail_from, helo_name)
        else:
            spf_outcome = SPFOutcome(SPFResult.NONE, spf_domain, "no identity to check")
        signatures = tuple(dkim.verify(data, self.dns.dkim_txt))
        author = from_domain(data)
        outcome = None
        if author is not None:
            outcome = dmarc.evaluate(
                self.dns, author,
                spf_pass_domain=spf_domain if spf_outcome.result is SPFResult.PASS else None,
                dkim_pass_domains=[s.domain for s in signatures if s.passed],
            )  # fmt: skip
        return AuthVerdict(self.settings.authserv_id, spf_outcome, _safe(identity)[:300],
                           signatures, outcome, author)  # fmt: skip


def refusal(
    verdict: AuthVerdict, *, from_hosted: bool, enforce_dmarc: bool, refuse_spoofs: bool = True
) -> tuple[SMTPReply, Reason] | None:
    """Whether the inbound path must refuse this message, and with what."""
    result = verdict.dmarc.result if verdict.dmarc is not None else DMARCResult.PERMERROR
    if from_hosted and refuse_spoofs and result not in (DMARCResult.PASS, DMARCResult.TEMPERROR):
        return replies.SPOOFED_HOSTED, Reason.SPOOFED_HOSTED_DOMAIN
    if enforce_dmarc and verdict.dmarc is not None and verdict.dmarc.reject:
        return replies.DMARC_REJECTED, Reason.DMARC_REJECT
    return None


_AR_FIELD = re.compile(rb"^authentication-results:[ \t]*([^;\s]+)", re.IGNORECASE)


def strip_forged(data: bytes, authserv_id: str) -> bytes:
    """Drop Authentication-Results fields that claim to be ours (RFC 8601 §5)."""
    end = re.search(rb"\r?\n\r?\n", data)
    head, body = (data[: end.start()], data[end.start() :]) if end else (data, b"")
    kept: list[bytes] = []
    dropping = False
    for line in head.splitlines(keepends=True):
        if line[:1] in (b" ", b"\t"):
            if not dropping:
                kept.append(line)
            continue
        match = _AR_FIELD.match(line)
        dropping = bool(match and match.group(1).decode("ascii", "replace").lower()
                        == authserv_id.lower())  # fmt: skip
        if not dropping:
            kept.append(line)
    head = b"".join(kept)
    # ``body`` starts with the last field's line ending, which ``head`` may now repeat.
    if body and head.endswith(b"\n"):
        head = head[:-2] if head.endswith(b"\r\n") else head[:-1]
    return head + body
