"""The IMAP4rev1 wire layer: pure parsing and formatting, no I/O, no asyncio.

- :mod:`.commands`: ``parse_command(buf) -> Command`` and the command types;
- :mod:`.search`, :mod:`.fetch`: SEARCH criteria trees and FETCH attributes;
- :mod:`.sequence`: sequence sets; :mod:`.mutf7`: mailbox name encoding;
- :mod:`.tokens`: the low-level ``read_x(buf, pos)`` readers;
- :mod:`.responses`, :mod:`.formatting`: responses and IMAP data as bytes;
- :mod:`.errors`: NotParseable, NeedsLiteral, LiteralTooLarge, IMAPError;
- :mod:`.limits`: every limit, with the RFC text behind it.
"""

from imap.proto.commands import Command, ProtocolState, parse_command
from imap.proto.errors import IMAPError, LiteralTooLarge, NeedsLiteral, NotParseable

__all__ = [
    "Command",
    "IMAPError",
    "LiteralTooLarge",
    "NeedsLiteral",
    "NotParseable",
    "ProtocolState",
    "parse_command",
]
