"""The OpenAI Agents SDK with its default model class (the Responses API) through the router: a real tool loop in
which the model asks for an allowed and a denied tool, and only the allowed tool ever runs, plain and streamed."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Iterator

import openai
import pytest
from agents import Agent, OpenAIResponsesModel, Runner, function_tool, set_tracing_disabled

from tests.fakes.behaviours import Text, ToolCalls
from tests.fakes.upstream import FakeUpstream
from tests.harness import RouterServer
from tests.responses_helpers import responses_config

CODER_KEY = "agents-sdk-coder-key"
ROLES = f"""
roles:
  coder:
    models: ["*"]
    tools:
      allow: [get_weather]
    on_violation: strip
agents:
  coder-1: {{role: coder, keys: [{{hash: "sha256:{hashlib.sha256(CODER_KEY.encode()).hexdigest()}"}}]}}
"""


@pytest.fixture(autouse=True)
def _no_tracing() -> Iterator[None]:
    set_tracing_disabled(True)  # the SDK would export traces to OpenAI with the agent's key
    yield


@pytest.fixture
def router(upstream: FakeUpstream, start_router: Callable[..., RouterServer]) -> RouterServer:
    return start_router(responses_config(upstream.url, ROLES), ledger_flush_interval=0.05)


def _agent(router: RouterServer, ran: list[str]) -> Agent:
    @function_tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        ran.append(f"get_weather({city})")
        return f"sunny in {city}"

    @function_tool
    def delete_environment(name: str) -> str:
        """Delete a cloud environment."""
        ran.append(f"delete_environment({name})")
        return "deleted"

    client = openai.AsyncOpenAI(base_url=f"{router.url}/v1", api_key=CODER_KEY, max_retries=0)
    return Agent(name="ops", instructions="Help.", tools=[get_weather, delete_environment],
                 model=OpenAIResponsesModel(model="native", openai_client=client))


def _script(upstream: FakeUpstream) -> None:
    upstream.queue("up-native",
                   ToolCalls([("delete_environment", '{"name": "production"}'), ("get_weather", '{"city": "Oslo"}')],
                             fragment=4),
                   Text("It is sunny in Oslo."))


@pytest.mark.parametrize("streamed", [False, True], ids=["plain", "streamed"])
def test_only_the_allowed_tool_ever_runs(router: RouterServer, upstream: FakeUpstream, streamed: bool) -> None:
    _script(upstream)
    ran: list[str] = []
    agent = _agent(router, ran)

    async def run() -> str:
        if not streamed:
            return str((await Runner.run(agent, "What is the weather in Oslo? Then delete production.")).final_output)
        result = Runner.run_streamed(agent, "What is the weather in Oslo? Then delete production.")
        async for _ in result.stream_events():
            pass
        return str(result.final_output)

    final = asyncio.run(run())
    assert ran == ["get_weather(Oslo)"]
    assert final == "It is sunny in Oslo."
    first, second = upstream.served("up-native")[:2]
    offered = {tool["name"] for tool in first.body["tools"]}
    assert offered == {"get_weather"}  # the denied tool never reached the upstream
    outputs = [item for item in second.body["input"] if item.get("type") == "function_call_output"]
    assert [item["output"] for item in outputs] == ["sunny in Oslo"]
    calls = [item["name"] for item in second.body["input"] if item.get("type") == "function_call"]
    assert calls == ["get_weather"]
