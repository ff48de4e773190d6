"""crm_platform.csv_import: how an imported CSV file is read (customers and leads use it)."""

from __future__ import annotations

import pytest

from crm_platform.csv_import import cell_at_fault, csv_rows
from crm_platform.errors import DomainError, ValidationFailed


class TooLarge(Exception):
    pass


COLUMNS = {"name": "name", "名称": "name", "tier": "tier", "等级": "tier"}


def column_of(header: str) -> str | None:
    return COLUMNS.get(header.strip().lower())


def rows(text: str, max_rows: int = 10) -> list[tuple[int, dict[str, str]]]:
    return list(
        csv_rows(
            text,
            column_of,
            required=("name", "a 'name' (名称) column"),
            known="name, tier",
            max_rows=max_rows,
            too_many=lambda n: TooLarge(f"at most {n} rows"),
        )
    )


def refusal(text: str, max_rows: int = 10) -> DomainError:
    with pytest.raises(DomainError) as caught:
        rows(text, max_rows)
    return caught.value


def test_rows_come_with_their_physical_line_blank_lines_skipped_unknown_empty_headers_ignored() -> None:
    text = '名称,等级,\n甲,A,x\n\n"乙\n公司",B\n , \n丙\n'
    assert rows(text) == [(2, {"name": "甲", "tier": "A"}), (5, {"name": "乙\n公司", "tier": "B"}), (7, {"name": "丙"})]


@pytest.mark.parametrize(
    ("text", "field", "reason"),
    [
        ("", "body", "the file is empty"),
        ("name,colour\nx,red\n", "header", "unknown column(s): colour; known: name, tier"),
        ("tier\nA\n", "header", "a 'name' (名称) column is required"),
        ("name,tier\nAcme,A\nBeta\rGamma,B\n", "name", "line 3: column 'name': a bare carriage return"),
        ("na\rme,tier\nAcme,A\n", "header", "line 1: a bare carriage return"),
    ],
)
def test_a_file_is_refused_whole_naming_the_field_and_why(text: str, field: str, reason: str) -> None:
    problem = refusal(text)
    assert isinstance(problem, ValidationFailed)
    assert problem.errors[0].field == field and reason in problem.errors[0].reason, problem.errors


def test_a_cell_under_no_header_is_refused_at_the_body_with_its_line() -> None:
    for text in ("name,\nAcme,ok\nBeta,a\rb\n", "name\nAcme\nBeta,a\rb\n"):
        problem = refusal(text)
        assert problem.errors[0].field == "body" and problem.extra == {"line": 3}
        assert problem.errors[0].reason.startswith("line 3: a bare carriage return"), problem.errors


def test_more_rows_than_allowed_is_the_callers_error_before_any_row_past_the_limit() -> None:
    seen = []
    reader = csv_rows(
        "name\na\nb\nc\n",
        column_of,
        required=("name", "name"),
        known="name",
        max_rows=2,
        too_many=lambda n: TooLarge(f"at most {n} rows"),
    )
    with pytest.raises(TooLarge, match="at most 2 rows"):
        for line, row in reader:
            seen.append((line, row["name"]))
    assert seen == [(2, "a"), (3, "b")]


def test_the_cell_at_fault_reads_quotes_as_the_csv_module_does() -> None:
    text = 'a,"b\rc",d\re,f\n'
    assert cell_at_fault(text, 1, lambda start, end, cr: cr is not None) == 2
    assert cell_at_fault(text, 1, lambda start, end, cr: end - start > 4) == 1
    assert cell_at_fault(text, 2, lambda start, end, cr: True) == 0  # the empty line after the last LF
    assert cell_at_fault(text, 3, lambda start, end, cr: True) is None
