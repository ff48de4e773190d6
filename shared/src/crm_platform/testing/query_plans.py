"""Proof that a code path's store commands are index lookups on the embedded store.

The embedded MongoDB stand-in (nx-27017) turns every command into SQL over SQLite,
and some query shapes become full scans whose cost grows with every row (an ``$in``
on an array field, a date wrapped in a function, an ``$or`` in a guarded write...).
Timing them is slow and noisy; the query plan is neither. :class:`TracedStore` runs
an nx-27017 server inside the test process (a thread), records every SQL statement
its SQLite connections execute (the trace callback gives them with their values
bound), and asks SQLite for each statement's plan (``EXPLAIN QUERY PLAN``).

A statement that reads a whole table (``SCAN <table>`` without an index) is a scan;
so is one that walks a whole index to sort (``SCAN <table> USING INDEX`` with no
``LIMIT``), and one that sorts its matches in a temporary b-tree when the caller
says the result must come in index order. Tests run a real code path (a create
through the API, a relay pass, a consumer applying events) against this store and
assert :meth:`Capture.scans` is empty, so a later change cannot bring a scan back.

This tests the embedded store's plans only: on real MongoDB the same shapes are
plain index lookups (equality/range on indexed fields, ``_id`` lookups).
"""

from __future__ import annotations

import re
import socket
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from nx_27017.handler import NeoSQLiteHandler
from nx_27017.server import run_server_threaded

from crm_platform.devstack.processes import free_port

#: Statements whose plan we read; the rest (PRAGMA, BEGIN, SAVEPOINT, CREATE ...) cost no rows.
_PLANNED = re.compile(r"^\s*(SELECT|UPDATE|DELETE|WITH|INSERT\s+INTO\s+\S+\s+SELECT)", re.IGNORECASE)
_SCAN = re.compile(r"^SCAN (?P<name>\S+)(?P<index> USING (?:COVERING )?INDEX \S+)?")
#: Scans that cost nothing per stored row: the schema table (the store reads it for every
#: command), a constant row, and table-valued functions over one document's array.
_FREE = re.compile(r"^SCAN (sqlite_master|sqlite_schema|CONSTANT ROW)|VIRTUAL TABLE")


@dataclass(frozen=True)
class Statement:
    database: str
    sql: str
    plan: tuple[str, ...]

    @property
    def full_scans(self) -> list[str]:
        """Plan lines that read every row of a table."""
        return [
            line for line in self.plan if (m := _SCAN.match(line)) and not m.group("index") and not _FREE.search(line)
        ]

    @property
    def index_walks(self) -> list[str]:
        """Plan lines that walk a whole index (fine only when a LIMIT stops the walk)."""
        if re.search(r"\bLIMIT\b", self.sql, re.IGNORECASE):
            return []
        return [line for line in self.plan if (m := _SCAN.match(line)) and m.group("index")]

    @property
    def sorts(self) -> list[str]:
        """Sorts of every match in a temporary b-tree. Not counted: sorting the rows that tie on
        an index-ordered prefix ("RIGHT PART", stopped by the LIMIT), and sorting rows found by
        equality on every column of their index (one tie group: a cursor's tie branch)."""
        searches = [line for line in self.plan if line.startswith("SEARCH")]
        ties_only = bool(searches) and not any(re.search(r"<expr>[<>]|\b(?:rowid|_id)[<>]", line) for line in searches)
        return [
            line
            for line in self.plan
            if "TEMP B-TREE" in line and "RIGHT PART" not in line and not (ties_only and "ORDER BY" in line)
        ]

    @property
    def unkeyed_sorts(self) -> list[str]:
        """Like :attr:`sorts`, but a sort counts as one tie group only when the statement pins a
        sort key by equality (a cursor's tie branch: its first ORDER BY key, or a sort key of the
        ``s`` copies, which the keyset leaves out of the ORDER BY once pinned). :attr:`sorts` also
        excuses a page 1 whose only equality is the scope (``status = 'active'``): a sort of the
        whole scope. Nor is "RIGHT PART" excused here: the rows that tie on the index-ordered key
        are sorted whole before the LIMIT applies, and a key many records share (a moment never
        set, a bulk import's creation time) makes that tie group as large as the scope (2.8 s
        for an admin's page at 100k customers): the index must carry the tie-breaker too."""
        order = re.search(r"\bORDER BY\s+(.+?)\s+(?:ASC|DESC)\b", self.sql, re.IGNORECASE)
        where = self.sql.split("ORDER BY", 1)[0]
        pinned = (order is not None and f"{order.group(1)} = " in where) or bool(
            re.search(r"json_extract\(data, '\$\.s\.[^']+'\) = ", where)
        )
        return [line for line in self.plan if "TEMP B-TREE" in line and not pinned]

    @property
    def row_filters(self) -> list[str]:
        """Per-row subqueries over a document's array (how the store turns ``$in``, and an equality
        on a field no ``_<field>`` index names, into SQL): no index serves them, so the statement
        walks whatever its index finds and tests each row, and a LIMIT stops that walk only once
        enough rows pass (never, when few or none do)."""
        searches = [line for line in self.plan if line.startswith("SEARCH")]
        if not any(line.startswith("CORRELATED") for line in self.plan):
            return []
        if searches and all(re.search(r"\((?:_id|rowid)=\?\)", line) for line in searches):
            return []  # one row by its id (a guarded write's version check): nothing to walk
        return [line for line in self.plan if line.startswith(("SCAN json_each", "CORRELATED"))][:1]

    def describe(self) -> str:
        return f"[{self.database}] {self.sql}\n    " + "\n    ".join(self.plan)


@dataclass
class Capture:
    statements: list[Statement] = field(default_factory=list)

    def scans(
        self, *, sorted_results: bool = False, row_filters: bool = False, unkeyed_sorts: bool = False
    ) -> list[Statement]:
        """Statements whose cost grows with the collection: full scans, whole-index walks,
        (with ``sorted_results``) sorts of every match in a temporary b-tree, (with
        ``unkeyed_sorts``) the same without excusing a sort of the whole scope as a tie group, and
        (with ``row_filters``) index walks that test each row with a subquery no index serves."""
        return [
            s
            for s in self.statements
            if s.full_scans
            or s.index_walks
            or (sorted_results and s.sorts)
            or (unkeyed_sorts and s.unkeyed_sorts)
            or (row_filters and s.row_filters)
        ]

    def report(self, *, sorted_results: bool = False, row_filters: bool = False, unkeyed_sorts: bool = False) -> str:
        scans = self.scans(sorted_results=sorted_results, row_filters=row_filters, unkeyed_sorts=unkeyed_sorts)
        return "\n".join(s.describe() for s in scans)

    def on(self, database: str) -> list[Statement]:
        return [s for s in self.statements if s.database == database]


class _TracingHandler(NeoSQLiteHandler):  # type: ignore[misc]  # the package ships no type hints
    """The server's request handler, with a trace callback on every SQLite connection it opens."""

    def __init__(self, store: TracedStore) -> None:
        self._store = store
        super().__init__(data_dir="memory")

    def _open_db_conn(self, db_name: str) -> Any:
        conn = super()._open_db_conn(db_name)
        conn.db.set_trace_callback(lambda sql: self._store._record(db_name, conn.db, sql))
        return conn


class TracedStore:
    """An nx-27017 server in this process (in-memory databases) that records and plans its SQL."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"mongodb://127.0.0.1:{self.port}"
        self._lock = threading.Lock()
        self._capture: Capture | None = None
        self._explaining = threading.local()
        self._handler = _TracingHandler(self)
        self._thread = threading.Thread(
            target=run_server_threaded, args=("127.0.0.1", self.port, self._handler), daemon=True, name="traced-store"
        )
        self._thread.start()
        self._wait_listening()

    def _wait_listening(self, timeout: float = 10.0) -> None:
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.02)
        raise RuntimeError("the traced store did not start listening")

    def _record(self, database: str, db: sqlite3.Connection, sql: str) -> None:
        capture = self._capture
        if capture is None or getattr(self._explaining, "active", False) or not _PLANNED.match(sql):
            return
        # The trace callback runs in the server's thread while it holds the database's lock,
        # so planning here sees the same schema and cannot interleave with another command.
        self._explaining.active = True
        try:
            plan = tuple(row[3] for row in db.execute(f"EXPLAIN QUERY PLAN {sql}").fetchall())
        except sqlite3.Error as exc:  # a statement SQLite cannot plan alone (should not happen)
            plan = (f"unplannable: {exc}",)
        finally:
            self._explaining.active = False
        with self._lock:
            capture.statements.append(Statement(database, sql, plan))

    @contextmanager
    def capture(self) -> Iterator[Capture]:
        """Record and plan every statement the store runs while the block runs."""
        capture = Capture()
        self._capture = capture
        try:
            yield capture
        finally:
            self._capture = None
