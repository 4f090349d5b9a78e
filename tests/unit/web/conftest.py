"""The web tests serve the views of a bound app: bind one (the api role's, unless the run
bound another already) before any test module imports a module that registers routes, so
each file also runs on its own."""

from __future__ import annotations

from tests.fixtures.agents import load_app

load_app("api")
