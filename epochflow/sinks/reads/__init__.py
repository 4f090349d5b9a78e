"""Queries over the sink's tables, one module per audience: `api` (the read API),
`overview` (the demo's and support's overviews), `scenario` (row lookups for the scenario
runner, benchmarks and tests), `quiescence` (is the pipeline still moving?), `dashboard`
(the operations dashboard's sampler); `query` holds what they share.

Rows come back as the same pydantic models the sink writes (or as plain dicts of them),
so a reader and the writer share one vocabulary. Every filter is a bound parameter.
"""
