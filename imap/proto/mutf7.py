"""Modified UTF-7 mailbox names (RFC 3501 §5.1.3).

Printable US-ASCII other than ``&`` stands for itself; ``&`` is written ``&-``;
every other character is written as UTF-16BE in base64 (with ``,`` for ``/``,
no padding) between ``&`` and ``-``.

Decoding is strict: only the encoding :func:`encode` would produce is
accepted, so that every mailbox has exactly one wire name. Two names that
differ only in encoding would otherwise map to the same folder, or one folder
could hide behind several names. Rejected are:

- bytes outside 0x20-0x7E;
- ``&`` not closed by ``-``, or base64 outside the modified alphabet;
- base64 whose bit count does not fit whole UTF-16 units, or whose
  leftover padding bits are not zero;
- unpaired UTF-16 surrogates;
- base64 used for a printable ASCII character (§5.1.3: "MUST NOT be used");
- two base64 runs back to back (``&AOk-&AOk-``), which the encoder merges.
"""

import binascii
import re

_SHIFTED = re.compile(rb"&([A-Za-z0-9+,]*)-")
# UTF-16 code units occupy 16 bits each; n base64 characters carry 6n bits.
# Valid lengths leave fewer than 6 spare bits: n mod 8 in {0, 3, 6}.
_VALID_B64_LENGTHS = frozenset({0, 3, 6})


class InvalidMUTF7(ValueError):
    """The bytes are not a canonical modified UTF-7 string."""


def _is_direct(char: str) -> bool:
    return "\x20" <= char <= "\x7e"


def encode(name: str) -> bytes:
    """Encode a Unicode mailbox name into its modified UTF-7 wire form."""
    out = bytearray()
    pending: list[str] = []

    def flush() -> None:
        if pending:
            raw = "".join(pending).encode("utf-16-be")
            b64 = binascii.b2a_base64(raw, newline=False).rstrip(b"=")
            out.extend(b"&" + b64.replace(b"/", b",") + b"-")
            pending.clear()

    for char in name:
        if _is_direct(char):
            flush()
            out.extend(b"&-" if char == "&" else char.encode("ascii"))
        else:
            pending.append(char)
    flush()
    return bytes(out)


def _decode_shifted(b64: bytes) -> str:
    if len(b64) % 8 not in _VALID_B64_LENGTHS:
        raise InvalidMUTF7("base64 run does not hold whole UTF-16 units")
    std = b64.replace(b",", b"/")
    padded = std + b"=" * (-len(std) % 4)
    try:
        raw = binascii.a2b_base64(padded, strict_mode=True)
    except binascii.Error as exc:
        raise InvalidMUTF7("invalid base64") from exc
    # Re-encoding must give back the same characters; otherwise the spare
    # bits of the last character were not zero (a non-canonical form).
    if binascii.b2a_base64(raw, newline=False).rstrip(b"=") != std:
        raise InvalidMUTF7("non-zero padding bits in base64 run")
    try:
        text = raw.decode("utf-16-be")
    except UnicodeDecodeError as exc:
        raise InvalidMUTF7("invalid UTF-16 (unpaired surrogate)") from exc
    if any(_is_direct(char) for char in text):
        raise InvalidMUTF7("printable ASCII must not be base64 encoded")
    return text


def decode(data: bytes) -> str:
    """Decode a modified UTF-7 wire name, raising :class:`InvalidMUTF7`."""
    parts: list[str] = []
    pos = 0
    previous_shift_end = -1
    while pos < len(data):
        amp = data.find(b"&", pos)
        direct = data[pos:] if amp < 0 else data[pos:amp]
        if any(byte < 0x20 or byte > 0x7E for byte in direct):
            raise InvalidMUTF7("characters outside printable ASCII must be encoded")
        parts.append(direct.decode("ascii"))
        if amp < 0:
            break
        match = _SHIFTED.match(data, amp)
        if match is None:
            raise InvalidMUTF7("'&' must start a base64 run closed by '-'")
        b64 = match.group(1)
        if not b64:
            parts.append("&")
        else:
            if previous_shift_end == amp:
                raise InvalidMUTF7("adjacent base64 runs must be merged")
            parts.append(_decode_shifted(b64))
            previous_shift_end = match.end()
        pos = match.end()
    return "".join(parts)


def is_valid(data: bytes) -> bool:
    try:
        decode(data)
    except InvalidMUTF7:
        return False
    return True
