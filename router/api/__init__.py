"""HTTP surface: the OpenAI-compatible endpoints, health, and the admin API."""
