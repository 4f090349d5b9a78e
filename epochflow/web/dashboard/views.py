"""The dashboard's routes and its sampler task on the api role's Faust app: importing
this module registers them (the api role loads it, `epochflow.topology`)."""

from __future__ import annotations

from functools import cache
from importlib import resources

from epochflow.app import app, settings
from epochflow.streams.names import topic_name
from epochflow.streams.security import client_options
from epochflow.web.access import Access
from epochflow.web.dashboard.sampler import Sampler
from epochflow.web.routes import ApiView, Operation, route

NO_STORE = {"Cache-Control": "no-store"}


@cache
def page_html() -> str:
    return resources.files("epochflow.web.dashboard").joinpath("dashboard.html").read_text(encoding="utf-8")


SAMPLER = Sampler(settings.database_url, settings.kafka_bootstrap if settings.kafka_url else "",
                  topic_name(settings, "dead-letter"), kafka_options=client_options(settings))


@route("/dashboard/", tag="operations",
       get=Operation("The operations dashboard (an HTML page that polls /dashboard/data.json)", Access.READ,
                     None, content_type="text/html"))
class DashboardPage(ApiView):
    async def get(self, request):
        try:
            return self.html(page_html(), headers=NO_STORE)
        except OSError as error:  # a packaging mistake: say so instead of a bare 500
            return self.text(f"dashboard.html is missing from the installed package: {error}", status=500)


@route("/dashboard/data.json", tag="operations",
       get=Operation("The dashboard's figures: the latest sample and the history the charts draw", Access.READ,
                     None, errors={503: "neither a database nor a broker is configured"}))
class DashboardData(ApiView):
    async def get(self, request):
        if not settings.database_url and not settings.kafka_url:
            return self.json({"error": "neither a database (DATABASE_URL) nor a broker is configured"},
                             status=503, headers=NO_STORE)
        return self.json(await SAMPLER.payload(), headers=NO_STORE)


@app.task
async def dashboard_sampler() -> None:
    await SAMPLER.run()
