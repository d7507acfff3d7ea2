"""What every ``mailward`` command shares: the context, the parser helpers, owners.

The command modules (``cli_directory``, ``cli_people``, ``cli_mailbox``,
``cli_rules``, ``cli_logs``) each expose ``register(commands, common)``;
handlers take ``(ctx, args)`` and return a ``Listing`` or a ``Detail``.
A verb registered with ``mutates=True`` changes the control plane, so
``admin.cli`` refuses it before touching the database unless ``--as`` names
the acting operator; the handler then resolves that operator inside its own
transaction with ``ctx.actor(session)``, which is what the audit entry names,
and the service it calls checks that operator's roles (``policy.permissions``).
Every other verb reads; when ``--as`` names an operator for a read,
``admin.cli`` first checks that they may read at all (hold any role).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from admin.cli_output import CLIError, Detail, Listing
from admin.config import Settings, load_settings
from admin.services.directory import Owner, find_operator, find_person, find_role
from storage.db import Database
from storage.models import Person, Role, RoleMember

Handler = Callable[["Context", argparse.Namespace], Listing | Detail | int]
Subcommands = Any  # argparse._SubParsersAction is private; this is what add_subparsers returns

NO_ACTOR = "this command changes the control plane: name the acting operator with --as USERNAME"


@dataclass
class Context:
    data_dir: Path
    now: datetime
    operator: str | None = None
    _db: Database | None = field(default=None, repr=False)

    def settings(self) -> Settings:
        return load_settings(self.data_dir)

    def database(self, *, create: bool = False) -> Database:
        """The control plane; refused when the data folder was never initialized."""
        if self._db is None:
            settings = self.settings()
            if not (create or settings.database_url or (self.data_dir / "mailward.db").exists()):
                raise CLIError(
                    f"no Mailward data in {self.data_dir}: run "
                    f"`mailward init --data {self.data_dir}` first"
                )
            self._db = Database(settings.db_url)
        return self._db

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self.database().session() as session:
            yield session

    def actor(self, session: Session) -> str:
        """The audit actor for a change: the ``--as`` operator, who must exist and be active."""
        if not self.operator:
            raise CLIError(NO_ACTOR)
        return f"operator:{find_operator(session, self.operator).username}"

    def close(self) -> None:
        if self._db is not None:
            self._db.dispose()
            self._db = None


def add_noun(
    commands: Subcommands, common: argparse.ArgumentParser, name: str, help: str
) -> Subcommands:
    parser = commands.add_parser(name, parents=[common], help=help, description=help)
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    return verbs


def add_verb(
    verbs: Subcommands,
    common: argparse.ArgumentParser,
    name: str,
    handler: Handler,
    help: str,
    *,
    mutates: bool = False,
) -> argparse.ArgumentParser:
    parser = verbs.add_parser(name, parents=[common], help=help, description=help)
    parser.set_defaults(handler=handler, mutates=mutates, reads=not mutates)
    return parser


def add_owner_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--owner", metavar="PERSON", help="the owning person (id or name)")
    group.add_argument("--owner-role", metavar="ROLE", help="the owning role (its members own it)")


def resolve_owner(session: Session, args: argparse.Namespace) -> Owner | None:
    """The owner the options name, or None so that the service refuses with its own reasons."""
    if args.owner:
        return Owner(person_id=find_person(session, args.owner).id)
    if args.owner_role:
        return Owner(role_id=find_role(session, args.owner_role).id)
    return None


def count(session: Session, stmt: Select[Any]) -> int:
    return session.scalar(select(func.count()).select_from(stmt.subquery())) or 0


def contact(person: Person) -> dict[str, Any]:
    return {
        "id": person.id,
        "name": person.name,
        "email": person.contact_email,
        "phone": person.contact_phone,
    }


def owner_view(session: Session, person_id: int | None, role_id: int | None) -> dict[str, Any]:
    """The owner of a mailbox or rule with the out-of-band contacts of everyone behind it."""
    if person_id is not None:
        person = session.get(Person, person_id)
        if person is not None:
            return {"kind": "person", "name": person.name, "people": [contact(person)]}
    if role_id is not None:
        role = session.get(Role, role_id)
        if role is not None:
            members = session.scalars(
                select(Person)
                .join(RoleMember, RoleMember.person_id == Person.id)
                .where(RoleMember.role_id == role.id)
                .order_by(Person.name)
            )
            return {"kind": "role", "name": role.name, "people": [contact(p) for p in members]}
    return {"kind": "none", "name": None, "people": []}  # a defect the audit must flag


def owner_label(owner: dict[str, Any]) -> str | None:
    if owner["kind"] == "role":
        return f"{owner['name']} (role)"
    return owner["name"]
