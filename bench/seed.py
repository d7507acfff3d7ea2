"""Seed a Mailward data folder like the reference stack: 2 domains x N users.

Users are ``user1..userN`` at ``client-a.test`` and ``client-b.test`` with the
password ``secret`` (as the reference's), each owned by a person, in one
organization with a pooled quota large enough not to interfere.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from admin.config import load_settings
from admin.services import directory as d
from storage.db import Database
from storage.secrets import hash_password

DOMAINS = ("client-a.test", "client-b.test")
# The reference stack's documented test password (../shared/bench/README.md),
# so one load command fits both targets. Bench data only, never a deployment.
REFERENCE_PASSWORD: Final = "secret"
ACTOR = "system:bench"


def seed(data_dir: Path, users: int, password: str) -> None:
    settings = load_settings(data_dir)
    db = Database(settings.db_url)
    db.migrate()
    now = datetime.now(UTC)
    hashed = hash_password(password)  # one hash for all: argon2 is slow on purpose
    with db.session() as s:
        org = d.create_organization(s, actor=ACTOR, now=now, name="Bench Agency",
                                    quota_bytes=500 * 1024**3)  # fmt: skip
        client = d.create_client(s, actor=ACTOR, now=now, organization=org, name="Bench")
        owner = d.create_person(s, actor=ACTOR, now=now, organization=org, name="Bench Owner",
                                contact_email="owner@bench.example")  # fmt: skip
        for name in DOMAINS:
            domain = d.create_domain(s, actor=ACTOR, now=now, client=client, name=name)
            for i in range(1, users + 1):
                box = d.create_mailbox(s, actor=ACTOR, now=now, domain=domain,
                                       local_part=f"user{i}", owner=d.Owner(person_id=owner.id))
                box.password_hash = hashed
    db.dispose()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--users", type=int, default=50)
    ap.add_argument("--password", default=REFERENCE_PASSWORD)
    args = ap.parse_args()
    seed(args.data, args.users, args.password)


if __name__ == "__main__":
    main()
