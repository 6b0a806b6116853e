"""Offline work (issue 22): batch prediction, YAML pipelines, schedules, releases."""
