"""The monitor's URLs: ``path("autotask/", include("autotask.urls"))``."""

from __future__ import annotations

from django.urls import path

from .monitor import metrics, views

app_name = "autotask"

urlpatterns = [
    path("", views.overview, name="overview"),
    path("overview.json", views.overview_json, name="overview-json"),
    path("events/", views.overview_events, name="overview-events"),
    path("runs/", views.runs, name="runs"),
    path("runs/retry/", views.retry_filtered, name="runs-retry"),
    path("runs/<int:run_id>/", views.run, name="run"),
    path("runs/<int:run_id>/events/", views.run_events, name="run-events"),
    path("runs/<int:run_id>/retry/", views.retry, name="run-retry"),
    path("runs/<int:run_id>/cancel/", views.cancel, name="run-cancel"),
    path("tasks/", views.tasks, name="tasks"),
    path("schedules/", views.schedules, name="schedules"),
    path("schedules/<str:name>/<str:action>/", views.schedule_action, name="schedule-action"),
    path("metrics/", metrics.metrics_view, name="metrics"),
]
