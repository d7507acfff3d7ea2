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
from typing import TYPE_CHECKING

from admin.config import ConfigError, load_settings

if TYPE_CHECKING:
    from admin.cli_base import Context

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

    return serve(ctx.settings())


# Options that take a value, to find the command word among the arguments.
_VALUED_OPTIONS = ("--data", "--as")


def command_word(argv: list[str]) -> str | None:
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg in _VALUED_OPTIONS:
            skip = True
        elif not arg.startswith("-"):
            return arg
    return None


def serve_main(argv: list[str]) -> int:
    """``mailward serve`` without importing the other commands and the services
    behind them: the serving process never gives memory back (5 MiB here)."""
    parser = argparse.ArgumentParser(prog="mailward", description="run every server")
    _global_options(parser, suppress=False)
    parser.add_argument("command", choices=["serve"])
    args = parser.parse_args(argv)
    try:
        settings = load_settings(Path(args.data))
    except ConfigError as exc:
        return _fail(str(exc))
    from admin.runtime import serve  # the composition root

    return serve(settings)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if command_word(argv) == "serve" and not {"-h", "--help"} & set(argv):
        return serve_main(argv)
    from admin.cli_base import NO_ACTOR, Context
    from admin.cli_output import CLIError, emit
    from admin.services import ServiceError
    from admin.services.permissions import authorize
    from policy.permissions import Action
    from storage.db import StorageUnavailable

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
        result = args.handler(ctx, args)
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
