"""JSON or CSV: every report has ``rows``; CSV is UTF-8 with a BOM so Excel reads Chinese correctly."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from fastapi import Request, Response
from fastapi.responses import JSONResponse

Document = dict[str, Any]
BOM = "\ufeff"


def wants_csv(request: Request, fmt: str | None) -> bool:
    if fmt is not None:
        return fmt == "csv"
    return "text/csv" in request.headers.get("accept", "")


def _cell(value: Any) -> Any:
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return "" if value is None else value


def to_csv(rows: list[Document]) -> str:
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(row.get(c)) for c in columns])
    return BOM + out.getvalue()


def respond(request: Request, fmt: str | None, report: Document, rows: list[Document], name: str) -> Response:
    if wants_csv(request, fmt):
        return Response(
            to_csv(rows).encode("utf-8"),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
        )
    return JSONResponse(report)
