"""``mailward person|role|operator``: the people who own mail and who run the service."""

from __future__ import annotations

import argparse
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from admin.cli_base import Context, Subcommands, add_noun, add_verb, count
from admin.cli_output import Detail, Listing
from admin.services import directory as d
from storage.models import Domain, Mailbox, Operator, OperatorRole, Person, Role, RoleMember
from storage.models_identity import OperatorTOTP


def register(commands: Subcommands, common: argparse.ArgumentParser) -> None:
    person = add_noun(commands, common, "person", "people: owners, reachable out of band")
    p = add_verb(person, common, "create", person_create, "record a person", mutates=True)
    p.add_argument("name")
    p.add_argument("--email", help="an out-of-band contact email (not on a hosted domain)")
    p.add_argument("--phone", help="an out-of-band contact phone number")
    p.add_argument("--org", help="the organization (default: the only one)")
    add_verb(person, common, "list", person_list, "list people")

    role = add_noun(commands, common, "role", "roles that own mail through their members")
    p = add_verb(role, common, "create", role_create, "create an owner role", mutates=True)
    p.add_argument("name")
    p.add_argument(
        "--member",
        action="append",
        required=True,
        metavar="PERSON",
        help="a member (id or name); repeat for each",
    )
    p.add_argument("--org", help="the organization (default: the only one)")
    add_verb(role, common, "list", role_list, "list owner roles")

    operator = add_noun(commands, common, "operator", "operators of the control plane")
    p = add_verb(operator, common, "create", operator_create, "create an operator", mutates=True)
    p.add_argument("username")
    p.add_argument("--person", required=True, help="the person behind the login (id or name)")
    p.add_argument(
        "--role",
        action="append",
        required=True,
        metavar="ROLE[@DOMAIN]",
        help=f"one of {', '.join(sorted(d.OPERATOR_ROLES))}, optionally scoped to "
        "a domain; repeat for each",
    )
    add_verb(operator, common, "list", operator_list, "list operators and their roles")
    from admin.cli_identity import register_operator_verbs  # setup-link, sessions, api-token

    register_operator_verbs(operator, common)


def _organization(session: Session, name: str | None) -> Any:
    return d.get_organization(session, name) if name else d.default_organization(session)


def _person_row(session: Session, person: Person) -> dict[str, Any]:
    username = session.scalars(
        select(Operator.username).where(Operator.person_id == person.id)
    ).first()
    roles = session.scalars(
        select(Role.name)
        .join(RoleMember, RoleMember.role_id == Role.id)
        .where(RoleMember.person_id == person.id)
        .order_by(Role.name)
    ).all()
    owns = count(session, select(Mailbox.id).where(Mailbox.owner_person_id == person.id))
    return {
        "id": person.id,
        "name": person.name,
        "email": person.contact_email,
        "phone": person.contact_phone,
        "operator": username,
        "roles": list(roles),
        "mailboxes": owns,
        "created_at": person.created_at,
    }


def person_create(ctx: Context, args: argparse.Namespace) -> Detail:
    with ctx.session() as session:
        person = d.create_person(
            session,
            actor=ctx.actor(session),
            now=ctx.now,
            organization=_organization(session, args.org),
            name=args.name,
            contact_email=args.email,
            contact_phone=args.phone,
        )
        row = _person_row(session, person)
    return Detail(row, message=f"created person #{person.id} {person.name!r}")


def person_list(ctx: Context, args: argparse.Namespace) -> Listing:
    with ctx.session() as session:
        people = session.scalars(select(Person).order_by(Person.name, Person.id))
        return Listing([_person_row(session, p) for p in people], empty="no people")


def _role_row(session: Session, role: Role) -> dict[str, Any]:
    members = session.scalars(
        select(Person.name)
        .join(RoleMember, RoleMember.person_id == Person.id)
        .where(RoleMember.role_id == role.id)
        .order_by(Person.name)
    ).all()
    owns = count(session, select(Mailbox.id).where(Mailbox.owner_role_id == role.id))
    return {
        "id": role.id,
        "name": role.name,
        "members": list(members),
        "mailboxes": owns,
        "created_at": role.created_at,
    }


def role_create(ctx: Context, args: argparse.Namespace) -> Detail:
    with ctx.session() as session:
        members = [d.find_person(session, ref) for ref in args.member]
        role = d.create_role(
            session,
            actor=ctx.actor(session),
            now=ctx.now,
            organization=_organization(session, args.org),
            name=args.name,
            members=members,
        )
        row = _role_row(session, role)
    return Detail(row, message=f"created role {role.name!r} with {len(members)} member(s)")


def role_list(ctx: Context, args: argparse.Namespace) -> Listing:
    with ctx.session() as session:
        roles = session.scalars(select(Role).order_by(Role.name))
        return Listing([_role_row(session, r) for r in roles], empty="no roles")


def operator_roles(session: Session, operator_id: int) -> list[str]:
    rows = session.execute(
        select(OperatorRole.role, Domain.name)
        .outerjoin(Domain, OperatorRole.domain_id == Domain.id)
        .where(OperatorRole.operator_id == operator_id)
        .order_by(OperatorRole.role, Domain.name)
    )
    return [f"{role}@{domain}" if domain else role for role, domain in rows]


def _operator_row(session: Session, operator: Operator) -> dict[str, Any]:
    return {
        "username": operator.username,
        "person": operator.person.name,
        "roles": operator_roles(session, operator.id),
        "active": operator.active,
        "password_set": operator.password_hash is not None,
        "totp": session.get(OperatorTOTP, operator.id) is not None,
        "created_at": operator.created_at,
    }


def _parse_role(session: Session, text: str) -> tuple[str, Domain | None]:
    role, _, domain = text.partition("@")
    return role.strip(), d.get_domain(session, domain) if domain else None


def operator_create(ctx: Context, args: argparse.Namespace) -> Detail:
    with ctx.session() as session:
        actor = ctx.actor(session)
        person = d.find_person(session, args.person)
        roles = [_parse_role(session, text) for text in args.role]
        operator = d.create_operator(
            session, actor=actor, now=ctx.now, person=person, username=args.username, roles=roles
        )
        row = _operator_row(session, operator)
    return Detail(
        row,
        message=f"created operator {operator.username!r} for {person.name!r} "
        f"({', '.join(row['roles'])}); they set their own password through a link: "
        f"mailward operator setup-link {operator.username} --as USERNAME",
    )


def operator_list(ctx: Context, args: argparse.Namespace) -> Listing:
    with ctx.session() as session:
        operators = session.scalars(select(Operator).order_by(Operator.username))
        return Listing([_operator_row(session, o) for o in operators], empty="no operators")
