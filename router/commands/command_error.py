"""The one way a subcommand fails: a one-line message for people and an exit code, printed by ``main``."""

from __future__ import annotations


class CommandError(Exception):
    """Raised by a subcommand (or a helper it uses); ``agent-router`` prints ``agent-router: <message>`` to
    stderr and exits with ``exit_code``: 1 for a state of the world (a missing database), 2 for a bad input."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(" ".join(message.split()))
        self.exit_code = exit_code
