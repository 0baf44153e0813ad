"""Checks before a key is created: the agent name is sane and the key will resolve to a role that exists."""

from __future__ import annotations

import re

from router.config.snapshot import Snapshot

_AGENT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@:-]{0,127}$")


class KeyRequestError(ValueError):
    pass


def role_for_new_key(snapshot: Snapshot, agent: str, role: str | None) -> tuple[str | None, list[str]]:
    """The role to store with a new key, and warnings; raise KeyRequestError when the key could never work."""
    if not _AGENT_NAME.match(agent or ""):
        raise KeyRequestError(f"agent name {agent!r} is not valid: letters, digits and _ . @ : - (at most 128)")
    configured = snapshot.agents.get(agent)
    if configured is not None:
        if role is not None and role != configured.role:
            return role, [f"agent {agent!r} has role {configured.role!r} in the config, which wins over {role!r}"]
        return role, []
    if role is None:
        raise KeyRequestError(f"agent {agent!r} is not in the config: give the key a role "
                              f"(one of: {', '.join(sorted(snapshot.roles)) or 'none defined'})")
    if role not in snapshot.roles:
        raise KeyRequestError(f"role {role!r} does not exist in the config "
                              f"(roles: {', '.join(sorted(snapshot.roles)) or 'none defined'})")
    return role, []
