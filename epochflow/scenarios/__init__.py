"""Acceptance scenarios (shared/acceptance/FORMAT.md): the runner that drives a fresh stack
per case, and the comparison of expected blocks with what PostgreSQL holds."""
