"""Reading a CSV file a person imports (customers, leads), row by row.

The first line names the columns (each service maps a header to its column, Chinese names
included); an unknown column, a missing required one, more rows than the import takes or a line
the parser gives up on refuses the whole file before anything is written. A line the parser
cannot read is a 422 naming the line, and the column when that line shows it, in words a person
can act on: the parser cannot tell where a broken row ends, so no row after it is trusted either.
Blank lines are skipped; each row comes with its physical line number, for the report.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator

from crm_platform.errors import FieldError, ValidationFailed

#: A header cell to its column (None: not a column the import knows).
ColumnOf = Callable[[str], str | None]


def csv_rows(
    text: str,
    column_of: ColumnOf,
    *,
    required: tuple[str, str],
    known: str,
    max_rows: int,
    too_many: Callable[[int], Exception],
) -> Iterator[tuple[int, dict[str, str]]]:
    """``(line, {column: cell})`` for each non-blank row. ``required``: a column the file must have
    and how to name it to a person (``("name", "a 'name' (名称) column")``); ``known``: the columns
    listed when a header is unknown; ``too_many(max_rows)``: the error for row ``max_rows + 1``."""
    reader = csv.reader(io.StringIO(text))
    try:
        header = next(reader)
    except StopIteration as exc:
        raise ValidationFailed.for_field("body", "the file is empty; the first line must name the columns") from exc
    except csv.Error as exc:
        raise unreadable(text, reader.line_num, exc, None, column_of) from exc
    columns = [column_of(h) for h in header]
    unknown = [h for h, c in zip(header, columns, strict=True) if c is None and h.strip()]
    if unknown:
        raise ValidationFailed.for_field("header", f"unknown column(s): {', '.join(unknown)}; known: {known}")
    column, named = required
    if column not in columns:
        raise ValidationFailed.for_field("header", f"{named} is required")
    count = 0
    while True:
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise unreadable(text, reader.line_num, exc, header, column_of) from exc
        if not any(v.strip() for v in values):
            continue
        count += 1
        if count > max_rows:
            raise too_many(max_rows)
        yield reader.line_num, {c: v for c, v in zip(columns, values, strict=False) if c is not None}


def unreadable(text: str, line: int, exc: csv.Error, header: list[str] | None, column_of: ColumnOf) -> ValidationFailed:
    """A file the CSV parser gives up on at ``line``: 422 naming the line, and the column (by its
    header) when that line shows which cell is at fault."""
    message = str(exc)
    limit = csv.field_size_limit()
    if "new-line character" in message:
        reason = "a bare carriage return (CR) inside an unquoted field; quote the field or remove the CR"
        cell = cell_at_fault(text, line, lambda start, end, cr: cr is not None)
    elif "field larger than field limit" in message:
        reason = f"a field is longer than {limit:,} characters"
        cell = cell_at_fault(text, line, lambda start, end, cr: end - start > limit)
    else:
        reason = f"not readable as CSV ({message})"
        cell = None
    field = "header" if header is None else "body"
    name = header[cell].strip() if header is not None and cell is not None and cell < len(header) else ""
    if name:  # a cell under a header (not one past the header's cells, nor under an empty one)
        field = column_of(name) or name
        reason = f"column '{name}': {reason}"
    detail = f"line {line}: {reason}"
    return ValidationFailed(detail, errors=[FieldError(field=field, reason=detail)], extra={"line": line})


def cell_at_fault(text: str, line: int, faulty: Callable[[int, int, int | None], bool]) -> int | None:
    """The index of the first cell on physical line ``line`` for which ``faulty(start, end,
    position of a bare CR or None)`` holds, reading quotes as the csv module does; None when
    the line does not show it (a quoted cell spanning lines)."""
    lines = text.split("\n")  # the reader's lines: StringIO splits at LF only
    if not 1 <= line <= len(lines):
        return None
    row = lines[line - 1].removesuffix("\r")  # CRLF ends a line; only a CR before that is bare
    cell, start, quoted, bare_cr = 0, 0, False, None
    for i, char in enumerate([*row, ","]):  # a closing comma ends the last cell
        if char == '"':
            quoted = not quoted
        elif char == "\r" and not quoted and bare_cr is None:
            bare_cr = i
        elif char == "," and not quoted:
            if faulty(start, i, bare_cr):
                return cell
            cell, start, bare_cr = cell + 1, i + 1, None
    return None
