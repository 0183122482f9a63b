"""CSV export of a period's cases: UTF-8 with BOM so Excel shows the Chinese text correctly."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from datetime import date, datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from models.deadlines import WorkCalendar
from models.engine import session_scope
from models.stats import export_header, export_rows, local_days_bounds

BOM = "\ufeff"
FLUSH_ROWS = 500
# Excel runs a cell that starts with one of these as a formula (CSV injection).
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


class PeriodError(ValueError):
    """A bad from/to query parameter; the message is shown to the user (Chinese)."""


def _parse_day(raw: str | None, name: str) -> date | None:
    if raw is None or raw.strip() == "":
        return None
    try:
        return date.fromisoformat(raw.strip())
    except ValueError:
        raise PeriodError(
            f"日期格式不正确：{name}={raw!r}，请使用 YYYY-MM-DD 格式，例如 2026-03-01。"
        ) from None


def parse_period(
    raw_from: str | None, raw_to: str | None, now: datetime, calendar: WorkCalendar
) -> tuple[date, date]:
    """District-local dates first..last (inclusive); defaults: this month's first day, today."""
    today = calendar.to_local(now).date()
    first = _parse_day(raw_from, "from") or today.replace(day=1)
    last = _parse_day(raw_to, "to") or today
    if first > last:
        raise PeriodError(f"开始日期 {first} 晚于结束日期 {last}，请检查导出时间段。")
    return first, last


def _safe_cell(value: str) -> str:
    # A leading apostrophe makes Excel show the text instead of evaluating it.
    if value.startswith(_FORMULA_STARTS):
        try:
            float(value)
            return value
        except ValueError:
            return "'" + value
    return value


async def csv_chunks(
    engine: AsyncEngine,
    first: date,
    last: date,
    *,
    now: datetime,
    rules,
    include_personal: bool,
) -> AsyncIterator[str]:
    """The export as text chunks: BOM and header first, then rows as they stream from the store."""
    start, end = local_days_bounds(first, last, rules.calendar)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    buffer.write(BOM)
    writer.writerow(export_header(include_personal))
    async with session_scope(engine) as session:
        rows = 0
        async for row in export_rows(
            session, start=start, end=end, now=now, rules=rules, include_personal=include_personal
        ):
            writer.writerow([_safe_cell(v) for v in row])
            rows += 1
            if rows % FLUSH_ROWS == 0:
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
    yield buffer.getvalue()
