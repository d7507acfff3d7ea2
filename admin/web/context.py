"""What the admin web app is given: the database, the identity environment, paths, a clock.

``create_app(services)`` takes one ``AdminServices`` (services injected, not
looked up: hynek/svcs style); the composition root builds it with
``build_services`` from the configuration it has read.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from admin.config import Settings
from admin.notify import NotifySettings, OutboundSubmitter, build_notifier
from admin.services.identity import IdentityEnv
from admin.services.totp import SecretBox
from storage.db import Database


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class AdminServices:
    db: Database
    env: IdentityEnv
    data_dir: Path
    mail_root: Path
    # Cookies get the Secure attribute when the app is served over TLS, or
    # always when this is set (TLS terminated by a proxy in front).
    secure_cookies: bool = False
    clock: Callable[[], datetime] = field(default=utcnow)

    @property
    def export_root(self) -> Path:
        return self.data_dir / "exports"


def public_url(host: str, port: int, *, tls: bool = False) -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    return f"{'https' if tls else 'http'}://{shown}:{port}"


def build_services(
    db: Database,
    *,
    data_dir: Path,
    mail_root: Path,
    url: str,
    notify: NotifySettings | None = None,
    hostname: str = "localhost",
    submitter: OutboundSubmitter | None = None,
    secure_cookies: bool = False,
) -> AdminServices:
    notifier = build_notifier(
        notify or NotifySettings(), data_dir=data_dir, hostname=hostname, submitter=submitter
    )
    env = IdentityEnv(notifier=notifier, public_url=url, box=SecretBox.from_data_dir(data_dir))
    return AdminServices(
        db=db, env=env, data_dir=data_dir, mail_root=mail_root, secure_cookies=secure_cookies
    )


def services_from_settings(
    db: Database,
    settings: Settings,
    *,
    port: int | None = None,
    notify: NotifySettings | None = None,
    submitter: OutboundSubmitter | None = None,
    tls: bool = False,
) -> AdminServices:
    """``build_services`` from the configuration the composition root has read.

    ``port``: the admin port actually bound, when the configured one is 0.
    """
    listen = settings.listen
    url = public_url(listen.host, port if port is not None else listen.admin_port, tls=tls)
    return build_services(
        db,
        data_dir=settings.data_dir,
        mail_root=settings.mail_root,
        url=url,
        notify=notify,
        hostname=settings.hostname,
        submitter=submitter,
        secure_cookies=tls,
    )
