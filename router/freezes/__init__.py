"""The kill switch: an operator freezes an agent or a role, and every key of it is refused on both planes.

``store`` is the durable record (the ``freezes`` table, each change audited in the same transaction), ``shared``
the fleet's fast copy (a Redis map), ``view`` what a running router consults per request (a dict lookup, kept
fresh in the background, failing closed when it cannot be).
"""
