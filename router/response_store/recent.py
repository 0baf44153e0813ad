"""The most recent stored responses, in memory: a follow-up sent right after an answer finds it at once,
before (and whether or not) its batch has reached the database. Bounded by count and by characters of JSON;
the oldest go first."""

from __future__ import annotations

from collections import OrderedDict

from router.response_store.rows import ResponseRow


class RecentResponses:
    def __init__(self, max_items: int, max_chars: int) -> None:
        self.max_items = max_items
        self.max_chars = max_chars
        self.chars = 0
        self._rows: OrderedDict[str, ResponseRow] = OrderedDict()

    def __len__(self) -> int:
        return len(self._rows)

    def put(self, row: ResponseRow) -> None:
        """Keep ``row`` as the newest (one larger than the whole bound is not kept)."""
        self.discard(row.id)
        if row.size > self.max_chars or self.max_items <= 0:
            return
        self._rows[row.id] = row
        self.chars += row.size
        while len(self._rows) > self.max_items or self.chars > self.max_chars:
            _, oldest = self._rows.popitem(last=False)
            self.chars -= oldest.size

    def get(self, response_id: str) -> ResponseRow | None:
        return self._rows.get(response_id)

    def discard(self, response_id: str) -> None:
        row = self._rows.pop(response_id, None)
        if row is not None:
            self.chars -= row.size
