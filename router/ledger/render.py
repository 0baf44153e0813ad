"""Rows of dicts as a text table, CSV or JSON, for the CLI and the admin API."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

FORMATS = ("table", "csv", "json")


def _cell(value: Any) -> str:
    return "" if value is None else str(value)


def table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    cells = [[_cell(row.get(name)) for name in columns] for row in rows]
    widths = [max([len(name)] + [len(line[i]) for line in cells]) for i, name in enumerate(columns)]
    lines = ["  ".join(name.ljust(widths[i]) for i, name in enumerate(columns)).rstrip(),
             "  ".join("-" * width for width in widths)]
    lines += ["  ".join(line[i].ljust(widths[i]) for i in range(len(columns))).rstrip() for line in cells]
    return "\n".join(lines) + "\n"


def csv_text(rows: list[dict[str, Any]], columns: list[str]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(row.get(name)) for name in columns])
    return out.getvalue()


def json_text(document: Any) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False, default=str) + "\n"


def report_text(report: dict[str, Any], fmt: str, shown: list[str]) -> str:
    """A grouped report (``usage report``, ``mcp report``) as JSON, CSV (one line per group) or a table with a
    TOTAL line (the totals alone when nothing is grouped)."""
    if fmt == "json":
        return json_text(report)
    columns = list(report["group_by"]) + shown
    rows = list(report["groups"])
    if fmt == "csv":
        return csv_text(rows, columns)
    first = columns[0] if report["group_by"] else None
    total = {**report["totals"], **({first: "TOTAL"} if first else {})}
    return table([*rows, total] if first else [total], columns)
