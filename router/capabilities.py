"""What a request needs from a deployment, and whether a deployment can give it.

Fallback must never silently lose capability: a deployment that cannot serve the tools, parallel tool
calls, JSON mode, images or the prompt's size a request needs is skipped, with the reason kept. What a
deployment can do comes from :func:`router.model_catalog.model_info` (its config first, then litellm's
model map); unknown means "assume yes".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from providers.base import served_wire
from router.config.schema import DeploymentSpec
from router.context import RequestContext
from router.model_catalog import ModelInfo, model_info
from router.tokens import cheap_fit
from router.tokens import prompt_tokens as estimate
from router.wire import codec_for


@dataclass(frozen=True, slots=True)
class Needs:
    tools: bool = False
    parallel_tool_calls: bool = False
    json_mode: bool = False
    """``response_format`` json_object or json_schema."""
    json_schema: bool = False
    """``response_format`` json_schema (structured outputs)."""
    vision: bool = False
    embeddings: bool = False
    """An embeddings request: only an adapter serving the ``embeddings`` API natively can answer (no translation)."""

    @property
    def any(self) -> bool:
        return self.tools or self.json_mode or self.vision


def request_needs(payload: dict[str, Any]) -> Needs:
    tools = bool(payload.get("tools") or payload.get("functions"))
    response_format = payload.get("response_format")
    kind = response_format.get("type") if isinstance(response_format, dict) else None
    return Needs(tools=tools, parallel_tool_calls=tools and payload.get("parallel_tool_calls") is True,
                 json_mode=kind in ("json_object", "json_schema"), json_schema=kind == "json_schema",
                 vision=_has_images(payload))


def _has_images(payload: dict[str, Any]) -> bool:
    for message in payload.get("messages") or ():
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):
            for part in content:
                if isinstance(part, dict) and part.get("type") in ("image_url", "image", "input_image"):
                    return True
    return False


def missing_capability(info: ModelInfo, needs: Needs, configured: DeploymentSpec) -> str | None:
    """Why ``info``'s model cannot serve ``needs``, or None. Only an explicit False rules a deployment out.

    litellm's map knows structured outputs (``supports_response_schema``) but not plain JSON mode, so a
    ``json_object`` request is refused only by the deployment's own ``supports.json_mode: false``."""
    if needs.tools and info.supports_tools is False:
        return "does not support tools"
    if needs.parallel_tool_calls and info.supports_parallel_tool_calls is False:
        return "does not support parallel tool calls"
    if needs.json_schema and info.supports_json_mode is False:
        return "does not support structured outputs (response_format json_schema)"
    if needs.json_mode and configured.supports.json_mode is False:
        return "does not support JSON mode (response_format)"
    if needs.vision and info.supports_vision is False:
        return "does not support image inputs"
    return None


def prompt_tokens(ctx: RequestContext, smallest_window: int) -> int | None:
    """The prompt's token estimate when it might not fit ``smallest_window``; None when it surely fits
    (the estimate's cheap upper bound already fits, so nothing is tokenized)."""
    cached = ctx.prompt_estimate
    if cached is not None:
        return cached
    if cheap_fit(ctx, smallest_window) is True:
        return None
    try:
        return estimate(ctx)
    except Exception:  # an estimate that cannot be made must not fail the request
        return None


@dataclass(frozen=True, slots=True)
class Unfit:
    deployment: str
    reason: str
    kind: str
    """'capability' or 'context_window'."""


def screen(ctx: RequestContext, names: tuple[str, ...]) -> tuple[list[str], list[Unfit]]:
    """Split ``names`` into the deployments that can serve ``ctx`` and the ones that cannot (with why)."""
    needs = codec_for(ctx.wire).needs(ctx.payload)
    infos = {name: model_info(ctx.snapshot.deployments[name]) for name in names}
    windows = [info.context_window for info in infos.values() if info.context_window]
    # An embedding model's window bounds each input, not a batch's sum: only the upstream can judge.
    tokens = prompt_tokens(ctx, min(windows)) if windows and not needs.embeddings else None
    fit: list[str] = []
    unfit: list[Unfit] = []
    for name in names:
        info = infos[name]
        reason = missing_capability(info, needs, ctx.snapshot.deployments[name]) if needs.any else None
        if needs.embeddings:
            reason = _embeddings_unserved(ctx, name)
        if reason is not None:
            unfit.append(Unfit(name, reason, "capability"))
        elif tokens is not None and info.context_window and tokens > info.context_window:
            unfit.append(Unfit(name, f"prompt of about {tokens} tokens exceeds its context window of "
                                     f"{info.context_window}", "context_window"))
        else:
            fit.append(name)
    return fit, unfit


def _embeddings_unserved(ctx: RequestContext, name: str) -> str | None:
    provider_name = ctx.snapshot.deployments[name].provider
    if served_wire(ctx.snapshot.providers[provider_name], "embeddings") == "embeddings":
        return None
    kind = ctx.snapshot.provider_specs[provider_name].type
    return f"its provider {provider_name} (type {kind}) cannot serve embeddings"


def context_window(deployment: DeploymentSpec) -> int | None:
    return model_info(deployment).context_window
