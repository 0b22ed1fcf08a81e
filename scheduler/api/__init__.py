"""The HTTP API (FastAPI): routers for jobs, queues, nodes and agent sync."""
