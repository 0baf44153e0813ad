"""Carry out a :class:`RoutePlan`: try deployments in order, with timeouts, retries, fallback and cooldowns.

The only module with retries, timeouts and fallback. Providers raise typed errors;
:mod:`router.fallback_policy` says what each means for the next step, :mod:`router.capabilities` which
deployments can serve the request at all, :mod:`router.cooldown` which ones are cooling down.

Time limits: each attempt gets its deployment's (or provider's) ``timeout``; the whole request gets
``routing.deadline_seconds`` from the moment it arrived, enforced with asyncio timeouts so no request
outlives it whatever the adapter does (an adapter that declares ``keeps_deadline`` is handed the smaller of
the two limits and enforces it with the one timer it arms anyway). For a stream the deadline runs until its
first event; after that each event must arrive within the attempt timeout, a bound each adapter keeps itself
(the HTTP client's read timeout and a progress check for OpenAI-compatible upstreams, a per-chunk timeout for
litellm; the mock never waits), so no timer is armed per chunk here.

Streams travel as batches: a list of the events that arrived together (one network read). Relaying them in
one write saves a send per event without ever waiting for more data.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from providers.base import ChatCall, Completion, LastBatch, Provider, served_wire
from router.capabilities import context_window, screen
from router.config.schema import CooldownSpec, DeploymentSpec, RoutingSpec
from router.context import Attempt, RequestContext
from router.cooldown import LOG_INTERVAL_SECONDS, BreakerView, CircuitBreaker
from router.deployment_stats import DeploymentStats
from router.errors import (
    AdapterFailed,
    NotForwarded,
    ProviderError,
    UpstreamRateLimited,
    UpstreamServerError,
    UpstreamTimeout,
)
from router.fallback_policy import Failure, Skip, Step, backoff_delay, final_error, is_upstream_fault, next_step
from router.log_throttle import LogThrottle, held_note
from router.plan import RoutePlan
from router.redact import PATTERNS_ONLY, Redactor
from router.store.counters import Counters, MemoryCounters
from router.wire.pinning import unpinned
from router.wire.translate import TranslatedStream, translate_answer, upstream_headers, upstream_request

log = logging.getLogger("agent_router.executor")

T = TypeVar("T")
Batch = list[bytes]
Stream = tuple[Batch, AsyncIterator[Batch]]


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
    def __init__(self, counters: Counters | None = None, stats: DeploymentStats | None = None) -> None:
        self.stats = stats or DeploymentStats()
        self.breaker = CircuitBreaker(counters or MemoryCounters())
        self._log = LogThrottle(LOG_INTERVAL_SECONDS)

    async def complete(self, ctx: RequestContext, plan: RoutePlan) -> Completion:
        async def call(name: str, provider: Provider, chat: ChatCall, limit: float) -> Completion:
            if getattr(provider, "keeps_deadline", False):
                # The adapter bounds the whole call by chat.timeout itself (one timer it arms anyway): no second
                # timer here. The request's deadline may leave less than the attempt's own timeout.
                chat.timeout = min(chat.timeout, limit)
                completion = await provider.complete(chat)
            else:
                async with asyncio.timeout(limit):
                    completion = await provider.complete(chat)
            if chat.wire == ctx.wire:
                return completion
            return Completion(data=translate_answer(chat.wire, ctx.wire, completion.data, ctx))

        return await self._run(ctx, plan, call, streaming=False)

    async def open_stream(self, ctx: RequestContext, plan: RoutePlan) -> Stream:
        """Start a stream and wait for its first event; fallback is possible only until then."""

        async def call(name: str, provider: Provider, chat: ChatCall, limit: float) -> Stream:
            began = time.perf_counter()
            stream_batches: Callable[[ChatCall], AsyncIterator[Batch]] | None = getattr(provider, "stream_batches",
                                                                                          None)
            batched = stream_batches is not None
            iterator: AsyncIterator[Any] = stream_batches(chat) if stream_batches is not None \
                else provider.stream(chat)
            try:
                async with asyncio.timeout(limit):
                    first = await anext(iterator)
            except StopAsyncIteration:
                raise UpstreamServerError(f"{provider.name} sent an empty stream") from None
            except BaseException:
                await close_stream(iterator)
                raise
            tracked = TrackedStream(self, name, iterator, batched, chat.timeout, ctx.snapshot.spec.routing.cooldown,
                                    began, ctx.snapshot.redactor)
            if type(first) is LastBatch:  # the whole answer came in the first read
                await tracked.ended_well()
            batch: Batch = first if batched else [first]
            if chat.wire == ctx.wire:
                return batch, tracked
            translated = TranslatedStream(chat.wire, ctx.wire, tracked, ctx)
            return translated.first(batch), translated

        return await self._run(ctx, plan, call, streaming=True)

    # -- the fallback loop -------------------------------------------------------------------------
    async def _run(self, ctx: RequestContext, plan: RoutePlan,
                   call: Callable[[str, Provider, ChatCall, float], Awaitable[T]], streaming: bool) -> T:
        fit, unfit = screen(ctx, plan.deployments)
        skipped = [Skip(u.deployment, u.reason, u.kind) for u in unfit]
        view = await self._view(fit)
        try:
            return await self._fall_back(ctx, plan, call, streaming, view, skipped)
        finally:
            if skipped:
                ctx.skipped = [{"deployment": s.deployment, "reason": s.reason, "kind": s.kind}
                                        for s in skipped]

    async def _fall_back(self, ctx: RequestContext, plan: RoutePlan,
                         call: Callable[[str, Provider, ChatCall, float], Awaitable[T]], streaming: bool,
                         view: BreakerView, skipped: list[Skip]) -> T:
        routing = ctx.snapshot.spec.routing
        deadline = ctx.started + routing.deadline_seconds
        forced = not view.usable  # every deployment is cooling down: try them anyway, oldest failure first
        order = view.cooling if forced else view.usable
        if not forced:
            skipped += [Skip(n, "cooling down after repeated upstream faults", "cooldown") for n in view.cooling]
        failures: list[Failure] = []
        larger_than: int | None = None
        context_refused = False
        for index, name in enumerate(order):
            deployment = ctx.snapshot.deployments[name]
            if context_refused:
                window = context_window(deployment)
                if window is None or (larger_than is not None and window <= larger_than):
                    skipped.append(Skip(name, f"context window {window or 'unknown'} is not larger than "
                                              f"{larger_than or 'that of the deployment that refused the prompt'}",
                                        "context_window"))
                    continue
            probe = forced or name in view.half_open
            if probe and not forced and not await self._claim_probe(name, _timeout(ctx, deployment)):
                skipped.append(Skip(name, "cooling down (another request is probing it)", "cooldown"))
                continue
            # A half-open probe gets one try (a fault reopens its breaker and the plan has other deployments);
            # when every deployment is cooling down there is nothing better to do than retry as usual.
            single_try = probe and not forced
            retry = 0
            while True:
                remaining = deadline - time.perf_counter()
                if remaining <= 0:
                    raise final_error(failures, skipped, routing.deadline_seconds)
                try:
                    return await self._attempt(ctx, plan, name, deployment, remaining, call, probe, streaming)
                except ProviderError as exc:
                    failures.append(Failure(name, exc))
                    step = next_step(exc)
                    if step is Step.STOP:
                        raise
                    wait = self._retry_wait(exc, step, retry, routing, single_try, last=index == len(order) - 1)
                    if wait is not None and time.perf_counter() + wait < deadline:
                        retry += 1
                        await asyncio.sleep(wait)
                        continue
                    if step is Step.NEXT_LARGER:
                        context_refused = True
                        window = context_window(deployment)
                        if window is not None:
                            larger_than = max(larger_than or 0, window)
                    break
        deadline_hit = routing.deadline_seconds if time.perf_counter() >= deadline else None
        raise final_error(failures, skipped, deadline_hit)

    @staticmethod
    def _retry_wait(error: ProviderError, step: Step, retry: int, routing: RoutingSpec, single_try: bool,
                    last: bool) -> float | None:
        """Seconds to wait before trying the same deployment again, or None to move on."""
        if retry >= routing.retries or single_try:
            return None
        if step is Step.RETRY_SAME:
            return backoff_delay(retry, routing.backoff_base, routing.backoff_max)
        if isinstance(error, UpstreamRateLimited) and last and error.retry_after is not None \
                and error.retry_after <= routing.max_retry_after:
            return error.retry_after
        return None

    async def _attempt(self, ctx: RequestContext, plan: RoutePlan, name: str, deployment: DeploymentSpec,
                       remaining: float, call: Callable[[str, Provider, ChatCall, float], Awaitable[T]],
                       probe: bool, streaming: bool) -> T:
        provider = ctx.snapshot.providers[deployment.provider]
        attempt = Attempt(deployment=name, provider=deployment.provider, model=deployment.model)
        ctx.attempts.append(attempt)
        limit = min(_timeout(ctx, deployment), remaining)
        wire = served_wire(provider, ctx.wire)
        payload = ctx.payload if wire == ctx.wire else upstream_request(ctx, wire, deployment)
        if ctx.pinned_deployment is not None and name != ctx.pinned_deployment:
            payload = unpinned(ctx, payload)
        chat = ChatCall(body=build_body(payload, deployment, plan), timeout=_timeout(ctx, deployment),
                        request_id=ctx.request_id, extra_headers=upstream_headers(ctx, wire), wire=wire)
        started = time.perf_counter()
        self.stats.started(name)
        error: ProviderError
        try:
            result = await call(name, provider, chat, limit)
        except ProviderError as exc:
            error = masked(exc, ctx.snapshot.redactor)
        except TimeoutError:
            why = "the request deadline" if limit < chat.timeout else f"its timeout of {limit:g}s"
            error = UpstreamTimeout(f"{deployment.provider} did not answer before {why}")
        except asyncio.CancelledError:
            self.stats.finished(name, (time.perf_counter() - started) * 1000, ok=False)
            attempt.status, attempt.error = "error", "cancelled"
            raise
        except Exception as exc:  # a bug of ours: never blamed on the deployment, never a traceback to the client
            error = self._adapter_failed(deployment.provider, exc)
        else:
            attempt.status = "ok"
            attempt.latency_ms = (time.perf_counter() - started) * 1000
            if not streaming:
                self.stats.finished(name, attempt.latency_ms, ok=True)
            if probe:
                await self._probe_passed(name)
            elif due := self.breaker.answered(name):  # a local count; sent on about once a second
                await self._send_answered(name, due, ctx.snapshot.spec.routing.cooldown)
            return result
        attempt.status, attempt.error = "error", error.message
        attempt.latency_ms = (time.perf_counter() - started) * 1000
        self.stats.finished(name, attempt.latency_ms, ok=False)
        if isinstance(error, NotForwarded):
            if probe:
                await self._release_probe(name)  # no verdict: the upstream never saw the request
        elif is_upstream_fault(error):
            await self.count_fault(name, ctx.snapshot.spec.routing.cooldown, probe)
        elif probe:
            await self._probe_passed(name)  # the upstream answered; the fault was in the request
        elif due := self.breaker.answered(name):  # the upstream answered well; the fault was in the request
            await self._send_answered(name, due, ctx.snapshot.spec.routing.cooldown)
        raise error

    def _adapter_failed(self, provider: str, exc: Exception) -> AdapterFailed:
        """Log an adapter's unexpected exception with its traceback (at most one per ``LOG_INTERVAL_SECONDS``
        whatever the adapter, so never once per attempt) and make it our internal error."""
        held = self._log.allow("adapter bug")
        if held is not None:
            log.error("provider %s raised an unexpected error (a bug of ours, not the upstream's)%s", provider,
                      held_note(held), exc_info=exc)
        return AdapterFailed(f"internal error while calling provider {provider} ({type(exc).__name__}); "
                             "the router's log has the details")

    # -- cooldown state: never fails a request -----------------------------------------------------
    async def _view(self, names: list[str]) -> BreakerView:
        try:
            return await self.breaker.view(names)
        except Exception:
            log.exception("cooldown state unreadable; trying every deployment")
            return BreakerView(list(names), frozenset(), [])

    async def _claim_probe(self, name: str, ttl: float) -> bool:
        try:
            return await self.breaker.claim_probe(name, ttl)
        except Exception:
            log.exception("cooldown probe claim failed for %s; letting the request through", name)
            return True

    async def count_fault(self, name: str, spec: CooldownSpec, probe: bool, counted: bool = False) -> None:
        try:
            await self.breaker.failed(name, spec, probe=probe, counted=counted)
        except Exception:
            log.exception("cooldown state not updated for %s", name)

    async def _send_answered(self, name: str, count: int, spec: CooldownSpec) -> None:
        try:
            await self.breaker.send_answered(name, count, spec)
        except Exception:
            log.exception("cooldown state not updated for %s", name)

    async def _release_probe(self, name: str) -> None:
        try:
            await self.breaker.release_probe(name)
        except Exception:
            log.exception("cooldown probe of %s not released", name)

    async def _probe_passed(self, name: str) -> None:
        try:
            await self.breaker.succeeded(name)
        except Exception:
            log.exception("cooldown state not updated for %s", name)


class TrackedStream:
    """The rest of a stream after its first event, as batches; when it ends (done, failed or closed by a
    client that left) the deployment's stats and faults are recorded.

    The adapter bounds the wait for each event (``chunk_timeout``, see the module docstring); a timeout it
    lets through as ``TimeoutError`` is still reported as a stalled stream."""

    def __init__(self, executor: Executor, name: str, iterator: AsyncIterator[Any], batched: bool,
                 chunk_timeout: float, cooldown: CooldownSpec, started: float,
                 redactor: Redactor = PATTERNS_ONLY) -> None:
        self._executor = executor
        self._name = name
        self._iterator = iterator
        self._batched = batched
        self._chunk_timeout = chunk_timeout
        self._cooldown = cooldown
        self._started = started
        self._redactor = redactor
        self._done = False

    def __aiter__(self) -> TrackedStream:
        return self

    async def __anext__(self) -> Batch:
        if self._done:
            raise StopAsyncIteration
        try:
            if self._batched:
                batch: Batch = await anext(self._iterator)
                if type(batch) is LastBatch:
                    await self.ended_well()
                return batch
            return [await anext(self._iterator)]
        except StopAsyncIteration:
            await self._end(ok=True)
            raise
        except TimeoutError:
            stalled = UpstreamTimeout(f"the upstream stream stalled for more than {self._chunk_timeout:g}s")
            await self._end(ok=False, error=stalled)
            raise stalled from None
        except ProviderError as exc:
            await self._end(ok=False, error=masked(exc, self._redactor))
            raise
        except BaseException:
            await self._end(ok=False)
            raise

    async def aclose(self) -> None:
        await self._end(ok=False)

    async def ended_well(self) -> None:
        """The adapter said its last batch is out (:class:`providers.base.LastBatch`)."""
        await self._end(ok=True)

    async def _end(self, ok: bool, error: ProviderError | None = None) -> None:
        if self._done:
            return
        self._done = True
        self._executor.stats.finished(self._name, (time.perf_counter() - self._started) * 1000, ok=ok)
        if error is not None and is_upstream_fault(error):
            await self._executor.count_fault(self._name, self._cooldown, probe=False, counted=True)
        await close_stream(self._iterator)


def masked(error: ProviderError, redactor: Redactor) -> ProviderError:
    """``error`` with the secrets in its message masked, in place: an upstream may echo our key in its error
    text, which would otherwise reach the agent, the usage rows and the logs. One regex search when clean."""
    message = redactor(error.message)
    if message is not error.message:
        error.message = message
        error.args = (message,)
    body = error.upstream_body
    if body:  # relayed as it came to a caller of the same wire: never with a secret in it
        text = body.decode("utf-8", "replace")
        clean = redactor(text)
        if clean is not text:
            error.upstream_body = clean.encode()
    return error


def _timeout(ctx: RequestContext, deployment: DeploymentSpec) -> float:
    if deployment.timeout is not None:
        return deployment.timeout
    return ctx.snapshot.provider_specs[deployment.provider].timeout


async def close_stream(iterator: AsyncIterator[Any]) -> None:
    aclose = getattr(iterator, "aclose", None)
    if aclose is not None:
        try:
            await aclose()
        except Exception:
            pass
