"""The imap.proto package as a whole: pure, importable, no event loop."""

import ast
from pathlib import Path

import imap.proto

PACKAGE = Path(imap.proto.__file__).parent


def test_no_asyncio_in_wire_layer() -> None:
    """Ensure no module of imap.proto imports asyncio (wire apart from loop)."""
    for path in sorted(PACKAGE.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            assert not any(name.split(".")[0] == "asyncio" for name in names), path.name


def test_public_api() -> None:
    """Ensure the package exports the parser entry point and its exceptions."""
    assert imap.proto.parse_command(b"a NOOP\r\n").tag == "a"
    assert set(imap.proto.__all__) >= {"parse_command", "NotParseable", "NeedsLiteral"}
