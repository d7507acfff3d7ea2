"""Modified UTF-7 mailbox names (RFC 3501 §5.1.3)."""

import pytest

from imap.proto.mutf7 import InvalidMUTF7, decode, encode, is_valid


@pytest.mark.parametrize(
    ("name", "wire"),
    [
        ("INBOX", b"INBOX"),
        ("", b""),
        ("&", b"&-"),
        ("Tom & Jerry", b"Tom &- Jerry"),
        ("Entwürfe", b"Entw&APw-rfe"),
        ("日本語", b"&ZeVnLIqe-"),
        # The example of RFC 3501 §5.1.3.
        ("~peter/mail/台北/日本語", b"~peter/mail/&U,BTFw-/&ZeVnLIqe-"),
        ("☺!", b"&Jjo-!"),
        ("😀", b"&2D3eAA-"),  # a surrogate pair
        ("é&", b"&AOk-&-"),
        ("tab\there", b"tab&AAk-here"),
    ],
)
def test_round_trip(name: str, wire: bytes) -> None:
    """Ensure encoding gives the canonical wire form and decoding reverses it."""
    assert encode(name) == wire
    assert decode(wire) == name
    assert is_valid(wire)


@pytest.mark.parametrize(
    "wire",
    [
        b"&",  # shift never closed
        b"&ZeVnLIqe",  # base64 never closed
        b"a&b",  # '&' followed by a non-base64 character
        b"&Z/VnLIqe-",  # '/' is standard base64, not modified
        b"&ZeVnLIqe=-",  # padding is not used
        b"&AGE-",  # 'a' must not be encoded
        b"&ACY-",  # '&' must be written '&-'
        b"&AOk-&AOk-",  # adjacent runs must be merged
        b"&AOl-",  # non-zero padding bits
        b"&AO-",  # two characters cannot hold a UTF-16 unit
        b"&AOkA-",  # five characters: a partial unit
        b"&2D0-",  # an unpaired high surrogate
        b"&3gA-",  # an unpaired low surrogate
        b"caf\xc3\xa9",  # raw UTF-8
        b"\xff",
        b"a\x00b",  # raw control characters
        b"line\r\nbreak",
        b"\x7f",
    ],
)
def test_rejects_non_canonical_and_invalid(wire: bytes) -> None:
    """Ensure every non-canonical or malformed encoding is refused."""
    with pytest.raises(InvalidMUTF7):
        decode(wire)
    assert not is_valid(wire)


def test_error_is_value_error() -> None:
    """Ensure callers that only know ValueError still catch decoding errors."""
    assert issubclass(InvalidMUTF7, ValueError)


def test_encode_refuses_lone_surrogate() -> None:
    """Ensure a str holding a lone surrogate cannot be encoded into a bad name."""
    with pytest.raises(UnicodeEncodeError):
        encode("bad\udc80")


@pytest.mark.parametrize("name", ["a" * 300, "ü" * 300, "x&y" * 50, "Ordner/Ünter/日本"])
def test_long_names_round_trip(name: str) -> None:
    """Ensure long mixed names survive a round trip unchanged."""
    assert decode(encode(name)) == name
