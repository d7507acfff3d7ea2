"""Exceptions of the wire layer; each knows the response it turns into.

Parsing raises three kinds of outcome besides a parsed command:

- :class:`NotParseable`: the command is malformed, or runs into a limit.
  ``response()`` gives ``tag BAD text`` (``* BAD`` when even the tag could not
  be read). Subclasses refine the reply: :class:`UnsupportedCharset` is a
  ``NO [BADCHARSET ...]`` (RFC 3501 §6.4.4 requires NO, not BAD), and
  :class:`LiteralTooLarge` carries ``[TOOBIG]``.
- :class:`NeedsLiteral`: not an error. The buffer ends right after a literal
  announcement ``{n}`` / ``{n+}``; the server loop writes ``+`` for a
  synchronising literal, reads ``size`` octets and the rest of the line,
  and calls the parser again with the whole buffer.
- :class:`IMAPError`: raised by command handlers (not by parsers) to refuse a
  command with NO or BAD and a response code (pymap's ``ResponseError``).
"""

from typing import Self

from imap.proto.limits import MAX_LITERAL_SIZE
from imap.proto.responses import ResponseCode, Status, badcharset_code, tagged, untagged_status


class NotParseable(Exception):
    """The input is not a valid command; answered with BAD."""

    status: Status = Status.BAD

    def __init__(self, message: str, *, tag: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.tag = tag
        self.code = code

    def with_tag(self, tag: str | None) -> Self:
        """Attach the command tag once the caller knows it; keeps an existing one."""
        if self.tag is None:
            self.tag = tag
        return self

    def response(self) -> bytes:
        """``tag BAD [code] message`` or, with no tag, ``* BAD [code] message``."""
        if self.tag is None:
            return untagged_status(self.status, self.message, self.code)
        return tagged(self.tag, self.status, self.message, self.code)


class UnsupportedCharset(NotParseable):
    """SEARCH named a charset we cannot decode (RFC 3501 §6.4.4: tagged NO)."""

    status = Status.NO

    def __init__(self, charset: str, supported: tuple[str, ...], *, tag: str | None = None):
        super().__init__(
            "unsupported charset",
            tag=tag,
            code=badcharset_code(supported).decode("ascii"),
        )
        self.charset = charset
        self.supported = supported


class LiteralTooLarge(NotParseable):
    """A literal announcement exceeds :data:`MAX_LITERAL_SIZE` (or the caller's limit).

    For a synchronising literal nothing has been sent yet: the command is
    refused with ``NO [TOOBIG]`` instead of ``+``. A non-synchronising literal
    is already on its way; the reply is ``BAD [TOOBIG]`` (RFC 7888) and the
    server must read and discard ``size`` octets, or close the connection.
    """

    def __init__(
        self,
        size: int,
        non_sync: bool,
        *,
        limit: int = MAX_LITERAL_SIZE,
        tag: str | None = None,
    ) -> None:
        super().__init__("literal too large", tag=tag, code=ResponseCode.TOOBIG)
        self.size = size
        self.non_sync = non_sync
        self.limit = limit
        self.status = Status.BAD if non_sync else Status.NO


class NeedsLiteral(Exception):  # a signal, not an error: hence no Error suffix
    """The buffer ends after ``{size}`` CRLF: read ``size`` more octets.

    ``command`` is the command name when known (``"APPEND"``, ``"LOGIN"``), so
    the server can apply a stricter limit, e.g. before authentication.
    """

    def __init__(
        self, size: int, non_sync: bool, *, tag: str | None = None, command: str | None = None
    ) -> None:
        super().__init__(f"literal of {size} octets expected")
        self.size = size
        self.non_sync = non_sync
        self.tag = tag
        self.command = command

    def with_context(self, tag: str | None, command: str | None) -> Self:
        self.tag = self.tag or tag
        self.command = self.command or command
        return self


class IMAPError(Exception):
    """A command refused with NO or BAD, carrying its response code and text."""

    def __init__(
        self,
        status: Status | str,
        text: str,
        code: ResponseCode | str | bytes | None = None,
    ) -> None:
        status = Status(status)
        if status not in (Status.NO, Status.BAD):
            raise ValueError("IMAPError is a NO or BAD response")
        super().__init__(text)
        self.status = status
        self.text = text
        self.code = code

    @classmethod
    def no(cls, text: str, code: ResponseCode | str | bytes | None = None) -> Self:
        return cls(Status.NO, text, code)

    @classmethod
    def bad(cls, text: str, code: ResponseCode | str | bytes | None = None) -> Self:
        return cls(Status.BAD, text, code)

    def response(self, tag: str | None) -> bytes:
        """``tag NO [code] text``, untagged when ``tag`` is ``None``."""
        if tag is None:
            return untagged_status(self.status, self.text, self.code)
        return tagged(tag, self.status, self.text, self.code)

    def __repr__(self) -> str:
        return f"IMAPError({self.status.value!r}, {self.text!r}, {self.code!r})"
