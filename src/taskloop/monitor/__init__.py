"""Runtime monitoring: Prometheus metrics, anomaly events, drift detection."""
