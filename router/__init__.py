"""agent-router: an OpenAI-compatible model router that governs what AI agents may do."""

__version__ = "0.1.0"
