"""GET /metrics: Prometheus' view of the web server (docs/monitoring.md).

The counters of every gunicorn worker process (metrics/multiproc.py) followed by the business figures
read now (metrics/figures.py: database and broker). With METRICS_TOKEN set it needs
`Authorization: Bearer <METRICS_TOKEN>`, like the orders API.
"""

from __future__ import annotations

from flask import Blueprint, Flask, Response, current_app
from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, CollectorRegistry, generate_latest

from metrics import defs, multiproc
from metrics.figures import QUEUES, BusinessCollector, QueueDepths
from webhook.auth import bearer_refusal
from webhook.deps import deps

bp = Blueprint("metrics", __name__)
_FIGURES = "qpay.metrics.figures"


def install(app: Flask) -> None:
    """Build this app's figures registry once and register the endpoint."""
    d = app.extensions["qpay"]
    defs.preset(d.settings.shop_numbers)
    figures = CollectorRegistry(auto_describe=False)
    # Looked up per scrape, like the views do (tests swap the unit of work on the app).
    figures.register(BusinessCollector(lambda: d.unit_of_work(),
                                       QueueDepths(d.settings.broker_url, QUEUES),
                                       d.settings.sweep_interval))
    app.extensions[_FIGURES] = figures
    app.register_blueprint(bp)


@bp.get("/metrics")
def metrics() -> Response:
    token = deps().settings.metrics_token
    if token is not None and (refusal := bearer_refusal(token)) is not None:
        return refusal
    body = generate_latest(multiproc.registry()) + generate_latest(current_app.extensions[_FIGURES])
    # The classic text format (names are plain ASCII): every Prometheus version parses it.
    response = Response(body, status=200, mimetype=None, content_type=CONTENT_TYPE_PLAIN_0_0_4)
    response.headers["Cache-Control"] = "no-store"
    return response
