"""Subcommands of ``agent-router`` beyond serve and check, one module each."""
