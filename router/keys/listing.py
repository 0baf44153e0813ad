"""What key listings show (``GET /admin/keys``, ``agent-router keys list``): config keys and stored keys in one
shape, each with the role it really gets (the config's role for an agent the config names wins over the key's)."""

from __future__ import annotations

from typing import Any

from router.config.snapshot import Snapshot
from router.identity import config_key_id
from router.keys.material import to_text
from router.keys.store import KeyRow


def config_key_entries(snapshot: Snapshot, agent: str | None = None) -> list[dict[str, Any]]:
    """The keys the config gives by hash (no prefix: only the hash is known), ``source: config``."""
    entries = []
    for name, spec in snapshot.agents.items():
        if agent is not None and name != agent:
            continue
        for number, key in enumerate(spec.keys):
            entries.append({"source": "config", "id": config_key_id(name, key.name, number), "prefix": None,
                            "agent": name, "role": spec.role, "effective_role": spec.role, "name": key.name,
                            "created_at": None, "expires_at": to_text(key.expires), "revoked_at": None})
    return entries


def stored_key_entries(snapshot: Snapshot, rows: list[KeyRow]) -> list[dict[str, Any]]:
    """Stored keys, ``source: database``; ``role`` is what the key was created with, ``effective_role`` what it
    gets now (None: the key cannot work until its agent is in the config)."""
    agents = snapshot.agents
    return [{**row.public(), "effective_role": agents[row.agent].role if row.agent in agents else row.role}
            for row in rows]


def key_entries(snapshot: Snapshot, rows: list[KeyRow], agent: str | None = None) -> list[dict[str, Any]]:
    return config_key_entries(snapshot, agent) + stored_key_entries(snapshot, rows)
