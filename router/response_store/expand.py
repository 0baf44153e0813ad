"""``previous_response_id``: the router keeps the conversation, so every upstream is called statelessly.

A request naming an earlier response gets, as its ``input``, the input that response answered (already whole),
then that response's output items, then its own new input. The Responses API's output items (messages,
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
    stored = await store.get_settled(previous, ctx.agent)
    if stored is None:
        raise PreviousResponseNotFound(previous)
    output = stored.response.get("output")
    payload["input"] = [*as_items(stored.input_items), *output_as_input(output), *new_items]
    del payload["previous_response_id"]
    store.origins.remember(output if isinstance(output, list) else [], stored.deployment)
    return stored.deployment
