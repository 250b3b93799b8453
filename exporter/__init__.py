"""Prometheus exporter for files that ingestion pipelines failed on."""

__version__ = "0.1.0"
