"""Addresses as values: parsing, folding, validation and IDN domains."""

from __future__ import annotations

import dataclasses

import pytest

from policy.addresses import (
    MAX_LOCAL_PART,
    Address,
    AddressError,
    normalize_domain,
    parse_address,
)


@pytest.mark.parametrize(
    "text",
    ["alice@example.com", "Alice@Example.COM", "ALICE@EXAMPLE.COM", "<Alice@Example.com>",
     "  <alice@example.com>  ", " alice@example.com ", "alice@example.com."],
)  # fmt: skip
def test_parse_folds_case_and_strips_brackets(text: str) -> None:
    """Ensure case, angle brackets, whitespace and a root dot do not change the address."""
    assert Address.parse(text) == Address("alice", "example.com")


def test_str_round_trips() -> None:
    """Ensure an address prints as local@domain and parses back to itself."""
    address = Address.parse("First.Last+tag@Sub.Example.org")
    assert str(address) == "first.last+tag@sub.example.org"
    assert Address.parse(str(address)) == address
    assert parse_address(str(address)) == address


def test_addresses_are_hashable_ordered_values() -> None:
    """Ensure addresses work as dict keys and sort by local part then domain."""
    a, b = Address.parse("a@example.com"), Address.parse("B@example.com")
    assert {a: 1, b: 2}[Address("b", "example.com")] == 2
    assert sorted([b, a]) == [a, b]
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.local = "x"  # type: ignore[misc]


@pytest.mark.parametrize(
    "text",
    [
        "", "<>", "alice", "alice.example.com", "@example.com", "alice@", "<@example.com>",
        "a b@example.com", ".alice@example.com", "alice.@example.com", "al..ice@example.com",
        "a@b@example.com", "alice<x>@example.com", '"@example.com', '"a"b"@example.com',
        '"a\r\nb"@example.com', "alice\r\n@example.com",
    ],
)  # fmt: skip
def test_invalid_local_parts_and_shapes_are_refused(text: str) -> None:
    """Ensure text without an @, with empty parts or a malformed local part is refused."""
    with pytest.raises(AddressError):
        Address.parse(text)


@pytest.mark.parametrize(
    "text",
    [
        "alice@localhost", "alice@-example.com", "alice@example-.com", "alice@exa_mple.com",
        "alice@exa mple.com", "alice@example..com", "alice@.example.com",
        f"alice@{'a' * 64}.com", f"alice@{'.'.join(['a' * 63] * 5)}",
    ],
    ids=["single-label", "leading-hyphen", "trailing-hyphen", "underscore", "space",
         "empty-label", "leading-dot", "label-too-long", "domain-too-long"],
)  # fmt: skip
def test_bad_domain_labels_are_refused(text: str) -> None:
    """Ensure domains with empty, over-long or malformed labels are refused."""
    with pytest.raises(AddressError):
        Address.parse(text)


def test_local_part_length_limit() -> None:
    """Ensure a 64-octet local part is accepted and 65 octets refused (RFC 5321)."""
    assert Address.parse(f"{'a' * MAX_LOCAL_PART}@example.com").local == "a" * 64
    with pytest.raises(AddressError):
        Address.parse(f"{'a' * (MAX_LOCAL_PART + 1)}@example.com")


def test_local_part_length_counts_octets_not_characters() -> None:
    """Ensure the 64 limit counts UTF-8 octets of a non-ASCII local part."""
    assert Address.parse(f"{'é' * 32}@example.com", utf8=True).local == "é" * 32
    with pytest.raises(AddressError):
        Address.parse(f"{'é' * 33}@example.com", utf8=True)


@pytest.mark.parametrize("text", ["jösé@example.com", "user@bücher.example", "ü@ü.de"])
def test_non_ascii_refused_without_smtputf8(text: str) -> None:
    """Ensure non-ASCII addresses are refused unless SMTPUTF8 was negotiated."""
    with pytest.raises(AddressError, match="SMTPUTF8"):
        Address.parse(text)


def test_non_ascii_local_part_accepted_with_smtputf8() -> None:
    """Ensure a UTF-8 local part is accepted (and folded) with SMTPUTF8."""
    assert Address.parse("Jösé@example.com", utf8=True) == Address("jösé", "example.com")


@pytest.mark.parametrize("text", ["jö sé@example.com", "jö\r\nsé@example.com", "jö@x@example.com"])
def test_utf8_local_part_still_needs_valid_syntax(text: str) -> None:
    """Ensure SMTPUTF8 widens the character set but admits no spaces or controls."""
    with pytest.raises(AddressError):
        Address.parse(text, utf8=True)


def test_idn_domain_becomes_a_label() -> None:
    """Ensure an internationalized domain is stored as its lower-case A-label."""
    address = Address.parse("User@Bücher.Example", utf8=True)
    assert address == Address("user", "xn--bcher-kva.example")
    assert Address.parse("user@xn--bcher-kva.example") == address
    assert normalize_domain("BÜCHER.example.") == "xn--bcher-kva.example"


@pytest.mark.parametrize(
    ("text", "local"),
    [('"john doe"@example.com', '"john doe"'), ('"a@b"@example.com', '"a@b"'),
     ('"a\\"b"@example.com', '"a\\"b"')],
)  # fmt: skip
def test_quoted_local_parts(text: str, local: str) -> None:
    """Ensure well-formed quoted local parts (RFC 5321 §4.1.2) are accepted as written."""
    assert Address.parse(text) == Address(local, "example.com")


def test_address_error_is_a_value_error() -> None:
    """Ensure callers catching ValueError also catch address errors."""
    assert issubclass(AddressError, ValueError)
