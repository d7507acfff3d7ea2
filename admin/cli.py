"""The ``mailward`` command line: a thin layer over ``admin.services``.

Commands are noun-verb (``mailward domain create acme.test --client Acme``).
The global options ``--data``, ``--json`` and ``--as`` are accepted before or
after the command: every subparser gets them from a parent parser whose
defaults are suppressed, so a value given after the command overrides the
top-level default instead of being reset by it.

Authorization happens once per change, in the service the command calls
(``admin.services.permissions.authorize``); reads are checked here, once for
every read verb: with ``--as``, the operator must hold a role. A read
without ``--as`` is the local administrator of the data folder, who can read
the database file anyway. A refused change or read exits 2 like any other
refusal.

The clock is read once here, at the edge, and passed to the services. Errors a
user can cause (refused changes, unknown names, bad configuration, an
unreachable database) print ``error: ...`` and exit 2; no traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

from admin import (
    cli_directory,
    cli_identity,
    cli_init,
    cli_logs,
    cli_mailbox,
    cli_people,
    cli_queue,
    cli_rules,
    cli_store,
)
from admin.cli_base import NO_ACTOR, Context
from admin.cli_output import CLIError, Detail, Listing, emit
from admin.config import ConfigError
from admin.services import ServiceError
from admin.services.permissions import authorize
from policy.permissions import Action
from storage.db import StorageUnavailable

EXIT_USAGE = 2
DEFAULT_DATA = "./var"


def _global_options(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    def default(value: object) -> object:
        return argparse.SUPPRESS if suppress else value

    parser.add_argument(
        "--data",
        metavar="DIR",
        default=default(DEFAULT_DATA),
        help=f"the data folder (default {DEFAULT_DATA})",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        default=default(False),
        help="print one JSON document instead of text",
    )
    parser.add_argument(
        "--as",
        dest="operator",
        metavar="OPERATOR",
        default=default(None),
        help="the operator making the change (required for changes)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mailward", description="Operate a Mailward mail server: every change is audited."
    )
    _global_options(parser, suppress=False)
    common = argparse.ArgumentParser(add_help=False)
    _global_options(common, suppress=True)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    cli_init.register(commands, common)
    serve = commands.add_parser("serve", parents=[common], help="run every server in one process")
    serve.set_defaults(handler=cmd_serve, mutates=False)

    for module in (cli_directory, cli_people, cli_mailbox, cli_rules, cli_logs, cli_store,
                   cli_identity, cli_queue):  # fmt: skip
        module.register(commands, common)
    return parser


def cmd_serve(ctx: Context, args: argparse.Namespace) -> int:
    from admin.runtime import serve  # the composition root; imported only when serving

    outcome = serve(ctx.settings())
    return outcome if isinstance(outcome, int) else 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error argparse has already printed
        return exc.code if isinstance(exc.code, int) else 0
    ctx = Context(data_dir=Path(args.data), now=datetime.now(UTC), operator=args.operator)
    try:
        if args.mutates and not args.operator:
            raise CLIError(NO_ACTOR)
        if getattr(args, "reads", False) and args.operator:
            with ctx.session() as session:
                authorize(session, ctx.actor(session), Action.READ)
        result: Listing | Detail | int = args.handler(ctx, args)
        return result if isinstance(result, int) else emit(result, as_json=args.json)
    except StorageUnavailable as exc:
        return _fail(f"the database is unavailable: {str(exc).splitlines()[0]}")
    except (ServiceError, ConfigError, CLIError) as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (``mailward log audit | head``): not an error of ours.
        # Point stdout at /dev/null so the interpreter's final flush cannot fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    finally:
        ctx.close()


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
