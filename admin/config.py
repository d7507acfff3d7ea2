"""Configuration, read once at the edge into frozen typed values.

``<data>/mailward.toml`` is optional; every key has a development default
(DESIGN.md ports) and unknown keys are refused, so a typo never silently falls
back to a default. Only the composition root reads this; servers get their
settings as explicit arguments.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

CONFIG_FILE = "mailward.toml"
MAX_SMTP_WORKERS = 64


class ConfigError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Listen:
    host: str = "127.0.0.1"
    smtp_port: int = 2525
    submission_port: int = 2587
    submissions_port: int = 2465
    imap_port: int = 2143
    imaps_port: int = 2993
    admin_port: int = 8025


@dataclass(frozen=True, slots=True)
class SMTPLimits:
    # RFC 5321 §4.5.3.1.8 asks servers to accept at least 100 recipients.
    max_recipients: int = 100
    max_message_bytes: int = 50 * 1024 * 1024
    timeout_seconds: float = 300.0  # RFC 5321 §4.5.3.2.7: at least five minutes
    # SPF, DKIM and DMARC checks of inbound mail (RFC 7208, 6376, 7489).
    verify_senders: bool = True
    # Submission AUTH is refused before TLS (RFC 8314); this lets clients on
    # the loopback range authenticate in clear (development, load tests).
    submission_plaintext_on_loopback: bool = False
    # Processes that accept SMTP and submission (admin.workers): one Python
    # process uses about one core, so a node with more cores can run more.
    workers: int = 1

    def __post_init__(self) -> None:
        if not 1 <= self.workers <= MAX_SMTP_WORKERS:
            raise ConfigError(f"[smtp] workers must be between 1 and {MAX_SMTP_WORKERS}")


@dataclass(frozen=True, slots=True)
class DNSOptions:
    nameservers: list[str] = field(default_factory=list)  # empty: the system's resolver
    port: int = 53


@dataclass(frozen=True, slots=True)
class QueueOptions:
    # Backoff per issue 4: 5 minutes doubling to 4 hours, give up after 5 days.
    initial_retry_seconds: float = 300.0
    max_retry_seconds: float = 4 * 3600.0
    max_age_days: float = 5.0
    per_destination: int = 5
    remote_port: int = 25
    # domain (or "*") -> "host:port": send there instead of the MX (smarthost, tests)
    transport: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class IMAPOptions:
    # Plaintext LOGIN is refused before TLS (RFC 8314); connections from the
    # loopback range may log in in clear during development.
    allow_plaintext_on_loopback: bool = True
    idle_timeout_seconds: float = 30 * 60.0  # RFC 3501 §5.4: at least 30 minutes


@dataclass(frozen=True, slots=True)
class NotifyOptions:
    # How invites, setup links and temporary credentials reach people out of
    # band: "file" (<data>/outbox/, development), "webhook", "email".
    channels: list[str] = field(default_factory=lambda: ["file"])
    webhook_url: str = ""
    mail_from: str = ""  # default: mailward@<hostname>


@dataclass(frozen=True, slots=True)
class TLSFiles:
    cert_file: str = ""
    key_file: str = ""


@dataclass(frozen=True, slots=True)
class Settings:
    data_dir: Path
    hostname: str = "mail.mailward.test"
    database_url: str = ""  # empty: SQLite in the data folder
    listen: Listen = field(default_factory=Listen)
    smtp: SMTPLimits = field(default_factory=SMTPLimits)
    imap: IMAPOptions = field(default_factory=IMAPOptions)
    dns: DNSOptions = field(default_factory=DNSOptions)
    queue: QueueOptions = field(default_factory=QueueOptions)
    notify: NotifyOptions = field(default_factory=NotifyOptions)
    tls: TLSFiles = field(default_factory=TLSFiles)

    @property
    def mail_root(self) -> Path:
        return self.data_dir / "mail"

    @property
    def spool_root(self) -> Path:
        return self.data_dir / "queue"

    @property
    def db_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'mailward.db').resolve()}"


def _section(cls: type[Any], raw: Any, name: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"[{name}] must be a table")
    known = {f.name: f for f in fields(cls)}
    unknown = set(raw) - set(known)
    if unknown:
        raise ConfigError(f"unknown key(s) in [{name}]: {', '.join(sorted(unknown))}")
    values = {}
    for key, value in raw.items():
        default = getattr(cls(), key)
        if type(value) is not type(default) and not (
            isinstance(default, float) and isinstance(value, int)
        ):
            raise ConfigError(f"[{name}] {key} must be a {type(default).__name__}")
        values[key] = value
    return cls(**values)


def load_settings(data_dir: Path) -> Settings:
    path = data_dir / CONFIG_FILE
    raw: dict[str, Any] = {}
    if path.exists():
        try:
            raw = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: {exc}") from exc
    sections = {"listen": Listen, "smtp": SMTPLimits, "imap": IMAPOptions, "dns": DNSOptions,
                "queue": QueueOptions, "notify": NotifyOptions, "tls": TLSFiles}  # fmt: skip
    top = {"hostname", "database_url"}
    unknown = set(raw) - set(sections) - top
    if unknown:
        raise ConfigError(f"unknown key(s) in {CONFIG_FILE}: {', '.join(sorted(unknown))}")
    kwargs: dict[str, Any] = {
        k: _section(cls, raw[k], k) for k, cls in sections.items() if k in raw
    }
    for key in top & set(raw):
        if not isinstance(raw[key], str):
            raise ConfigError(f"{key} must be a string")
        kwargs[key] = raw[key]
    return Settings(data_dir=data_dir, **kwargs)
