"""Carry out a :class:`RoutePlan`: try deployments in order and fall back on failures that allow it.

The only module with retries, timeouts and fallback. Providers raise typed errors; this module decides
what each error means for the next step.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

from providers.base import ChatCall, Completion
from router.config.schema import DeploymentSpec
from router.context import Attempt, RequestContext
from router.errors import NoDeploymentAvailable, ProviderError
from router.plan import RoutePlan


def build_body(payload: dict[str, Any], deployment: DeploymentSpec, plan: RoutePlan) -> dict[str, Any]:
    """The body for one attempt: the caller's fields untouched but for model and the route's params."""
    body = {**payload, "model": deployment.model}
    if deployment.params:
        body.update(deployment.params)
    if plan.set_params:
        body.update(plan.set_params)
    for name, cap in plan.cap_params.items():
        value = body.get(name)
        if value is None or (isinstance(value, int | float) and value > cap):
            body[name] = cap
    return body


class Executor:
    async def complete(self, ctx: RequestContext, plan: RoutePlan) -> Completion:
        last_error: ProviderError | None = None
        for name in plan.deployments:
            deployment = ctx.snapshot.deployments[name]
            provider = ctx.snapshot.providers[deployment.provider]
            attempt = Attempt(deployment=name, provider=deployment.provider, model=deployment.model)
            ctx.attempts.append(attempt)
            started = time.perf_counter()
            call = ChatCall(body=build_body(ctx.payload, deployment, plan), timeout=_timeout(ctx, deployment),
                            request_id=ctx.request_id)
            try:
                result = await provider.complete(call)
            except ProviderError as exc:
                attempt.status, attempt.error = "error", exc.message
                attempt.latency_ms = (time.perf_counter() - started) * 1000
                if not exc.retryable:
                    raise
                last_error = exc
                continue
            attempt.status = "ok"
            attempt.latency_ms = (time.perf_counter() - started) * 1000
            return result
        raise last_error or NoDeploymentAvailable(f"no deployment can serve model {ctx.requested_model!r}")

    async def open_stream(self, ctx: RequestContext, plan: RoutePlan) -> tuple[bytes, AsyncIterator[bytes]]:
        """Start a stream and wait for its first event; fallback is possible only until then."""
        last_error: ProviderError | None = None
        for name in plan.deployments:
            deployment = ctx.snapshot.deployments[name]
            provider = ctx.snapshot.providers[deployment.provider]
            attempt = Attempt(deployment=name, provider=deployment.provider, model=deployment.model)
            ctx.attempts.append(attempt)
            started = time.perf_counter()
            call = ChatCall(body=build_body(ctx.payload, deployment, plan), timeout=_timeout(ctx, deployment),
                            request_id=ctx.request_id)
            iterator = provider.stream(call)
            try:
                first = await iterator.__anext__()
            except StopAsyncIteration:
                attempt.status, attempt.error = "error", "empty stream"
                last_error = ProviderError(f"{deployment.provider} sent an empty stream")
                continue
            except ProviderError as exc:
                attempt.status, attempt.error = "error", exc.message
                attempt.latency_ms = (time.perf_counter() - started) * 1000
                await close_stream(iterator)
                if not exc.retryable:
                    raise
                last_error = exc
                continue
            attempt.status = "ok"
            attempt.latency_ms = (time.perf_counter() - started) * 1000
            return first, iterator
        raise last_error or NoDeploymentAvailable(f"no deployment can serve model {ctx.requested_model!r}")


def _timeout(ctx: RequestContext, deployment: DeploymentSpec) -> float:
    if deployment.timeout is not None:
        return deployment.timeout
    return ctx.snapshot.provider_specs[deployment.provider].timeout


async def close_stream(iterator: AsyncIterator[bytes]) -> None:
    aclose = getattr(iterator, "aclose", None)
    if aclose is not None:
        try:
            await aclose()
        except Exception:
            pass
