"""Agent API keys: how they are made (material), kept (store) and withdrawn across replicas (revocations)."""
