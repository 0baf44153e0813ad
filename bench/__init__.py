"""Side-by-side benchmark of agent-router against a bare pass-through proxy, the upstream itself and LiteLLM.

Run ``python -m bench`` (or ``bench/run``); ``--smoke`` for the few-second CI variant; ``--modes mcp`` for the MCP
gateway's ``tools/call`` against the fake MCP server called directly. See README "Performance".
"""
