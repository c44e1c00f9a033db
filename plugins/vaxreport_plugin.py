"""Registers vaxreport's UI additions with Airflow: the reports page under /vaxreport."""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from vaxreport_airflow.reports_app import create_app


class VaxreportPlugin(AirflowPlugin):
    name = "vaxreport"
    fastapi_apps = [{"app": create_app(), "url_prefix": "/vaxreport", "name": "vaxreport reports"}]
    external_views = [
        {"name": "Vaccination reports", "href": "/vaxreport/", "destination": "nav", "category": "browse"}
    ]
