"""Named limits of the IMAP wire layer, each with the text that motivates it.

The parsers enforce these so that a hostile client cannot make the server
allocate, recurse or loop without bound. The server loop uses the same
constants for its own reads (``MAX_LINE_LENGTH`` bounds ``readuntil``,
``MAX_LITERAL_SIZE`` is checked before answering ``+`` to a literal).
"""

from typing import Final

# RFC 7162 §4: servers "should accept command lines of at least 8192 octets"
# (quoted strings included, literals excluded). Counted without the CRLF.
MAX_LINE_LENGTH: Final = 8192

# RFC 3501 §4.3 puts no bound on literals; RFC 7889 (APPENDLIMIT) lets a
# server choose one. 50 MiB covers any message our MTA accepts.
MAX_LITERAL_SIZE: Final = 50 * 1024 * 1024

# RFC 7888 (LITERAL-): a server advertising LITERAL- rather than LITERAL+
# accepts non-synchronizing literals of at most 4096 octets.
MAX_NON_SYNC_LITERAL_MINUS: Final = 4096

# RFC 3501 §6.4.4 lets search keys nest without bound (NOT, OR, parentheses);
# RFC 9051 §3 (security) asks servers to guard against resource exhaustion.
MAX_NESTING_DEPTH: Final = 32

# RFC 3501 §9 sequence-set is unbounded; RFC 9051 §3 again. 10000 ranges is
# far beyond what a client produces for a real selection.
MAX_SEQUENCE_RANGES: Final = 10_000

# RFC 3501 §9: number is an "unsigned 32-bit integer", nz-number non-zero.
MAX_NUMBER: Final = 2**32 - 1

# RFC 7162 §7: mod-sequence-value is "1*DIGIT", a positive unsigned 63-bit
# value; RFC 9208 §9 number64 is likewise below 2**63.
MAX_NUMBER64: Final = 2**63 - 1

# Digits accepted before the value is even converted; prevents handing a
# multi-kilobyte digit string to int() (a quadratic conversion).
MAX_NUMBER_DIGITS: Final = 20

# Each literal of a command costs the client a round trip and the parser a
# re-parse of the buffer (RFC 3501 §7.5 continuation); a command never needs
# many. Bounding them bounds the parse work per command.
MAX_LITERALS_PER_COMMAND: Final = 100

# RFC 2971 §3.3: at most 30 field-value pairs, fields of at most 30 octets and
# values of at most 1024 octets.
MAX_ID_PAIRS: Final = 30
MAX_ID_FIELD_LENGTH: Final = 30
MAX_ID_VALUE_LENGTH: Final = 1024
