"""Statements on the bare driver connection, for the writes of the delivery path.

Every RCPT and every delivered message writes a few tiny rows (a routing log
entry, a quota charge). Through SQLAlchemy's Connection and Session each of
those statements paid tens of microseconds of Python bookkeeping (execution
contexts, result objects, savepoint state machines, events) on top of the
few microseconds SQLite needs, and that bookkeeping was most of the group
committer's time. Here a statement is written once as a SQLAlchemy Core
expression, compiled once per dialect (so SQLite and PostgreSQL get their
own SQL and the columns' own bind processors, e.g. ``UTCDateTime``), and then
executed straight on the driver's cursor.

``Tx`` is one transaction of the group committer: the raw cursor for these
statements, the hash-chain tails the transaction appends to (written in one
multi-row INSERT just before COMMIT, see ``storage.chain``), savepoints for
units that may fail alone; reads go through ``rows`` and ``scalar``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Dialect
from sqlalchemy.sql import ClauseElement

_Processor = Callable[[Any], Any] | None


class _Compiled:
    """One statement's SQL for one dialect, with how to turn named values into driver params."""

    __slots__ = ("literals", "names", "positional", "processors", "results", "sql")

    def __init__(self, clause: ClauseElement, dialect: Dialect, column_keys: list[str] | None):
        compiled = clause.compile(dialect=dialect, column_keys=column_keys)
        self.sql = compiled.string
        self.positional = dialect.positional
        by_name = {name: bind for bind, name in compiled.bind_names.items()}
        self.names: tuple[str, ...] = tuple(
            compiled.positiontup if self.positional and compiled.positiontup else by_name
        )
        self.processors: dict[str, _Processor] = {
            name: bind.type.bind_processor(dialect) for name, bind in by_name.items()
        }
        # Values fixed in the expression itself (``delta <= 0``).
        self.literals = {
            name: bind.effective_value
            for name, bind in by_name.items()
            if bind.value is not None or bind.callable is not None
        }
        # A SELECT's columns as the driver returns them → Python values (SQLite
        # keeps datetimes as text; ``UTCDateTime`` adds the zone), or None
        # where the driver's value is already right.
        columns = getattr(clause, "selected_columns", ())
        processors = [c.type.dialect_impl(dialect).result_processor(dialect, None)
                      for c in columns]  # fmt: skip
        self.results: list[_Processor] | None = processors if any(processors) else None

    def row(self, raw: Sequence[Any]) -> tuple[Any, ...]:
        if self.results is None:
            return tuple(raw)
        return tuple(p(v) if p is not None else v for p, v in zip(self.results, raw, strict=True))

    def params(self, values: Mapping[str, Any]) -> Sequence[Any] | dict[str, Any]:
        out: dict[str, Any] = {}
        for name in self.processors:
            value = values[name] if name in values else self.literals[name]
            process = self.processors[name]
            out[name] = process(value) if process is not None and value is not None else value
        if self.positional:
            return tuple(out[name] for name in self.names)
        return out


class Statement:
    """A Core statement compiled lazily, once per dialect.

    ``column_keys`` fixes the columns of an INSERT: every execution must then
    give a value for each of them (no column defaults are filled in here).
    """

    def __init__(self, clause: ClauseElement, *, column_keys: Iterable[str] | None = None):
        self.clause = clause
        self.column_keys = list(column_keys) if column_keys is not None else None
        self._by_dialect: dict[str, _Compiled] = {}

    def compiled(self, dialect: Dialect) -> _Compiled:
        found = self._by_dialect.get(dialect.name)
        if found is None:
            found = self._by_dialect[dialect.name] = _Compiled(
                self.clause, dialect, self.column_keys
            )
        return found


class Tx:
    """One transaction of the group committer on the driver connection under ``conn``."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.dialect = conn.dialect
        driver = conn.connection.driver_connection
        assert driver is not None
        self.cursor = driver.cursor()
        self.tails: dict[str, Any] = {}  # chain name → storage.chain.Tail
        self._savepoints = 0
        self._memo: dict[str, Any] = {}

    def execute(self, statement: Statement, values: Mapping[str, Any] | None = None) -> Any:
        compiled = statement.compiled(self.dialect)
        self.cursor.execute(compiled.sql, compiled.params(values or {}))
        return self.cursor

    def execute_many(self, statement: Statement, rows: Sequence[Mapping[str, Any]]) -> None:
        if rows:
            compiled = statement.compiled(self.dialect)
            self.cursor.executemany(compiled.sql, [compiled.params(r) for r in rows])

    def rows(
        self, statement: Statement, values: Mapping[str, Any] | None = None
    ) -> list[tuple[Any, ...]]:
        """Every row of a SELECT, its values converted as SQLAlchemy would."""
        compiled = statement.compiled(self.dialect)
        self.cursor.execute(compiled.sql, compiled.params(values or {}))
        return [compiled.row(raw) for raw in self.cursor.fetchall()]

    def scalar(self, statement: Statement, values: Mapping[str, Any] | None = None) -> Any:
        row = self.execute(statement, values).fetchone()
        return None if row is None else row[0]

    def memo(self, key: str, compute: Callable[[], Any]) -> Any:
        """A value computed once per transaction (e.g. the directory's version)."""
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """Run a unit that may fail alone: on error its statements and chain entries go."""
        from storage import chain  # chain imports this module

        self._savepoints += 1
        name = f"unit_{self._savepoints}"
        mark = chain.mark_tx(self)
        self.cursor.execute(f"SAVEPOINT {name}")
        try:
            yield
        except BaseException:
            self.cursor.execute(f"ROLLBACK TO SAVEPOINT {name}")
            self.cursor.execute(f"RELEASE SAVEPOINT {name}")
            chain.rewind_tx(self, mark)
            raise
        self.cursor.execute(f"RELEASE SAVEPOINT {name}")

    def close(self) -> None:
        self.cursor.close()
