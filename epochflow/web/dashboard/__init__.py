"""The operations dashboard of the api role: `GET /dashboard/` (one self-contained HTML
page, `dashboard.html` in this package) and `GET /dashboard/data.json` (what it draws).

`panels` shapes samples into what the page draws (pure), `sampler` reads PostgreSQL and
the dead-letter topic into samples (the I/O), `views` registers the routes and the
sampler task on the api role's Faust app (the only module that touches the app).
"""
