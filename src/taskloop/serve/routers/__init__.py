"""The service's HTTP routers, one per resource."""
