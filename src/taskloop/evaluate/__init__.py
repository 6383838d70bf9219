"""Metrics, reports and (later) explanations and error analysis."""
