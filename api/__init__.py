"""The synthgen HTTP API (FastAPI): ``api.main:create_app``."""
