"""Monitoring (issue 21): metrics, online evaluation, drift, alerts, provider canaries."""
