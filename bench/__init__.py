"""Side-by-side benchmark of agent-router against a bare pass-through proxy, the upstream itself and LiteLLM.

Run ``python -m bench`` (or ``bench/run``); ``--smoke`` for the few-second CI variant. See README "Performance".
"""
