"""The service: FastAPI app, authentication, storage, batching, the feedback page."""
