"""Every provider that does not speak OpenAI's wire format (Anthropic, Gemini/Vertex, Bedrock, Mistral,
Cohere...), through ``litellm.acompletion`` (and ``litellm.aembedding`` for embeddings).

litellm is heavy (seconds and a couple of hundred MB to import), so it is imported only here, only once a
provider of this type is built, and in a background thread so neither startup nor a config reload blocks
the event loop; the first call waits for it. Before the import the environment is set so litellm reads its
bundled price map and tokenizers and makes no network call; its callbacks and chatter are turned off.
litellm retries nothing here: the executor owns retries and fallback.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import importlib.util
import logging
import os
import threading
import warnings
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType
from typing import Any

from providers.base import ChatCall, Completion
from providers.litellm_embeddings import HELD_BACK, openai_embeddings
from providers.litellm_errors import describe, to_provider_error
from providers.litellm_shapes import ChunkShaper, openai_completion
from router.config.schema import ProviderSpec
from router.errors import ProviderError, UpstreamServerError

log = logging.getLogger("agent_router.providers.litellm")

# Body fields the client may not set: they steer litellm itself (where to send, which key, mock answers,
# callbacks...) rather than the model. Completed with litellm's own list once it is loaded.
_CONTROL_FIELDS = frozenset({
    "api_base", "base_url", "api_key", "api_version", "organization", "deployment_id", "default_headers",
    "extra_headers", "headers", "timeout", "request_timeout", "stream_timeout", "max_retries", "num_retries",
    "model_list", "shared_session", "client", "custom_llm_provider", "mock_response", "mock_timeout",
    "metadata", "litellm_logging_obj", "logger_fn", "fallbacks", "enable_json_schema_validation",
})
_control_fields: set[str] = set(_CONTROL_FIELDS)
# litellm answers a timeout a little after the deadline it was given; this is the outer safety net.
_TIMEOUT_GRACE = 2.0

_load_lock = threading.Lock()
_loading: concurrent.futures.Future[ModuleType] | None = None


def prepare_environment() -> None:
    """Make a later ``import litellm`` offline: local price map, bundled tokenizers."""
    os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    if not os.environ.get("TIKTOKEN_CACHE_DIR"):
        spec = importlib.util.find_spec("litellm")
        if spec is not None and spec.origin:
            tokenizers = Path(spec.origin).parent / "litellm_core_utils" / "tokenizers"
            if tokenizers.is_dir():
                os.environ["TIKTOKEN_CACHE_DIR"] = str(tokenizers)


def _import_litellm() -> ModuleType:
    prepare_environment()
    import litellm

    # pydantic warns once about litellm's own typing of thinking blocks: nothing an operator can act on.
    warnings.filterwarnings("ignore", message=r".*is using the `ReadOnly` qualifier", category=UserWarning)

    litellm.suppress_debug_info = True  # no "Give Feedback / Get Help" banner printed on every error
    litellm.telemetry = False
    litellm.disable_hf_tokenizer_download = True  # token counting must not fetch from Hugging Face
    litellm.success_callback = []
    litellm.failure_callback = []
    litellm.callbacks = []
    for name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    _control_fields.update(_litellm_params(litellm))
    return litellm


def _litellm_params(litellm: ModuleType) -> set[str]:
    try:
        from litellm.types.utils import all_litellm_params
    except ImportError:
        return set()
    # "user" and friends are OpenAI fields litellm maps itself; keep only what is litellm's own.
    openai_fields = set(getattr(litellm, "OPENAI_CHAT_COMPLETION_PARAMS", ()))
    return {name for name in all_litellm_params if name not in openai_fields} | _CONTROL_FIELDS


def start_loading() -> concurrent.futures.Future[ModuleType]:
    """Import litellm once per process, in a daemon thread; every caller shares the same future."""
    global _loading
    with _load_lock:
        if _loading is None:
            future: concurrent.futures.Future[ModuleType] = concurrent.futures.Future()

            def run() -> None:
                try:
                    future.set_result(_import_litellm())
                except BaseException as exc:
                    log.exception("importing litellm failed; litellm providers will answer 502")
                    future.set_exception(exc)

            threading.Thread(target=run, name="litellm-import", daemon=True).start()
            _loading = future
        return _loading


async def loaded_litellm() -> ModuleType:
    future = start_loading()
    if future.done():
        return future.result()
    return await asyncio.wrap_future(future)


class LiteLLMProvider:
    wires = ("chat", "embeddings")

    def __init__(self, name: str, spec: ProviderSpec) -> None:
        if importlib.util.find_spec("litellm") is None:
            raise ValueError(f"provider {name!r} has type litellm, but the litellm package is not installed")
        self.name = name
        self.spec = spec
        self._fixed: dict[str, Any] = {"drop_params": True, "num_retries": 0, "max_retries": 0}
        if spec.base_url:
            self._fixed["api_base"] = spec.base_url
        if spec.api_key:
            self._fixed["api_key"] = spec.api_key
        if spec.api_version:
            self._fixed["api_version"] = spec.api_version
        self._fixed.update(spec.options)
        start_loading()

    async def warm_up(self) -> None:
        """Wait until litellm is imported, so no request pays for the import (called before serving)."""
        await self._litellm()

    async def _litellm(self) -> ModuleType:
        try:
            return await loaded_litellm()
        except Exception as exc:
            raise UpstreamServerError(f"{self.name}: litellm could not be loaded: {exc}") from None

    def _kwargs(self, call: ChatCall, stream: bool) -> dict[str, Any]:
        control = _control_fields
        kwargs = {key: value for key, value in call.body.items() if key not in control}
        kwargs.update(self._fixed)
        kwargs["stream"] = stream
        kwargs["timeout"] = call.timeout
        headers = {**self.spec.headers, **(call.extra_headers or {})}
        if call.request_id:
            headers["x-request-id"] = call.request_id
        if headers:
            kwargs["extra_headers"] = headers
        return kwargs

    def _error(self, exc: BaseException) -> ProviderError:
        try:
            error = to_provider_error(exc, self.name)
        except Exception:  # the mapping must never let litellm's own exception escape
            log.exception("%s: could not classify %s", self.name, type(exc).__name__)
            error = UpstreamServerError(f"{self.name}: {type(exc).__name__}")
        log.debug("%s failed: %s -> %s", self.name, describe(exc), type(error).__name__)
        return error

    async def complete(self, call: ChatCall) -> Completion:
        litellm = await self._litellm()
        if call.wire == "embeddings":
            return await self._embed(litellm, call)
        try:
            async with asyncio.timeout(call.timeout + _TIMEOUT_GRACE):
                response = await litellm.acompletion(**self._kwargs(call, stream=False))
            data = openai_completion(response.model_dump(warnings=False))
        except Exception as exc:
            raise self._error(exc) from None
        return Completion(data=data)

    async def _embed(self, litellm: ModuleType, call: ChatCall) -> Completion:
        kwargs = self._kwargs(call, stream=False)
        for name in HELD_BACK:
            kwargs.pop(name, None)
        try:
            async with asyncio.timeout(call.timeout + _TIMEOUT_GRACE):
                response = await litellm.aembedding(**kwargs)
            data = response.model_dump(warnings=False)
        except Exception as exc:
            raise self._error(exc) from None
        as_base64 = call.body.get("encoding_format") == "base64"
        return Completion(data=openai_embeddings(data, str(call.body.get("model")), as_base64, self.name))

    async def stream(self, call: ChatCall) -> AsyncIterator[bytes]:
        litellm = await self._litellm()
        shaper = ChunkShaper(include_usage=bool((call.body.get("stream_options") or {}).get("include_usage")))
        upstream: Any = None
        try:
            try:
                async with asyncio.timeout(call.timeout + _TIMEOUT_GRACE):
                    upstream = await litellm.acompletion(**self._kwargs(call, stream=True))
                chunks = upstream.__aiter__()
                held: list[bytes] | None = []  # chunks without content, until the first one with some
                while True:
                    try:
                        async with asyncio.timeout(call.timeout + _TIMEOUT_GRACE):
                            chunk = await chunks.__anext__()
                    except StopAsyncIteration:
                        break
                    data = chunk.model_dump(warnings=False)
                    payload = shaper.feed(data)
                    if payload is None:
                        continue
                    if held is not None:
                        held.append(payload)
                        if not _carries_content(data):
                            continue
                        for earlier in held:
                            yield earlier
                        held = None
                        continue
                    yield payload
            except ProviderError:
                raise
            except Exception as exc:
                raise self._error(exc) from None
            if held is not None:
                # litellm answers garbage it could not read with a bare "stop" chunk: a fault, so that the
                # executor falls back (nothing has reached the client yet).
                raise UpstreamServerError(f"{self.name} sent a stream without a single readable event")
            tail = shaper.finish()
            if tail is not None:
                yield tail
        finally:
            await _close_quietly(upstream)

    async def close(self) -> None:
        """Nothing to release: litellm pools its HTTP clients per event loop, shared by every provider."""
        return None


def _carries_content(chunk: dict[str, Any]) -> bool:
    """A chunk with something the model said (a role, text, a tool call) or usage, not a bare finish."""
    if chunk.get("usage"):
        return True
    for choice in chunk.get("choices") or ():
        delta = choice.get("delta") or {}
        if any(delta.get(name) for name in ("role", "content", "tool_calls", "function_call", "refusal",
                                               "reasoning_content")):
            return True
    return False


async def _close_quietly(upstream: Any) -> None:
    aclose = getattr(upstream, "aclose", None)
    if aclose is None:
        return
    try:
        await aclose()
    except Exception:
        pass
