"""``previous_response_id``: the router keeps the conversation, so every upstream is called statelessly.

A request naming an earlier response gets, as its ``input``, every earlier turn in order (each stored response
keeps only its own turn's input and names the response it continued, so the walk goes back along that chain),
each turn's input followed by its output items, then its own new input. The Responses API's output items (messages,
function calls, reasoning, hosted tool calls) are valid input items as they are, ids and ``status`` included,
so they are passed on unchanged, unknown types too. ``instructions`` are not inherited (the API's documented
behaviour): the new request's own, if any, apply.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from router.errors import InvalidRequest, PreviousResponseNotFound

if TYPE_CHECKING:
    from router.context import RequestContext
    from router.response_store.store import ResponseStore


MAX_TURNS = 10_000
"""The longest chain of turns rebuilt (a bound on the walk, far beyond any real conversation)."""


def as_items(value: Any, param: str = "input") -> list[Any]:
    """A Responses ``input`` as a list of items: a string is one user message; absent is none."""
    if value is None:
        return []
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    if isinstance(value, list):
        return list(value)
    raise InvalidRequest(f"'{param}' must be a string or an array of input items", param=param)


def output_as_input(output: Any) -> list[dict[str, Any]]:
    """A response's ``output`` items as input items of the next turn (shallow copies; non-objects dropped)."""
    if not isinstance(output, list):
        return []
    return [dict(item) for item in output if isinstance(item, dict)]


async def expand_previous(store: ResponseStore, ctx: RequestContext) -> str | None:
    """Replace ``previous_response_id`` in ``ctx.payload`` by the whole conversation in ``input``; return the
    deployment that served the previous response (None when the request names none).

    Raise PreviousResponseNotFound (400, ``previous_response_not_found``) when ``ctx.agent`` has no such
    response: unknown, expired, deleted and another agent's look the same. On PostgreSQL a miss costs one flush
    interval more (see ``ResponseStore.get_settled``): a fleet's other replica may have just served it."""
    payload = ctx.payload
    if "previous_response_id" not in payload:
        return None
    previous = payload["previous_response_id"]
    if previous is None:
        del payload["previous_response_id"]
        return None
    if not isinstance(previous, str):
        raise InvalidRequest("'previous_response_id' must be a string", param="previous_response_id")
    new_items = as_items(payload.get("input"))
    turns: list[list[Any]] = []
    deployment: str | None = None
    wanted: str | None = previous
    seen: set[str] = set()
    while wanted is not None:
        # The named response may be on its way from another replica; the older links have long been written.
        stored = await (store.get(wanted, ctx.agent) if seen else store.get_settled(wanted, ctx.agent))
        if stored is None or wanted in seen or len(seen) >= MAX_TURNS:
            # A link expired, was deleted or loops: the conversation cannot be rebuilt whole, so it is not found.
            raise PreviousResponseNotFound(previous)
        seen.add(wanted)
        output = stored.response.get("output")
        turns.append([*as_items(stored.input_items), *output_as_input(output)])
        store.origins.remember(output if isinstance(output, list) else [], stored.deployment)
        deployment = deployment or stored.deployment
        wanted = stored.previous_id
    payload["input"] = [item for turn in reversed(turns) for item in turn] + new_items
    del payload["previous_response_id"]
    return deployment
