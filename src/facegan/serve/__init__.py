"""`facegan serve`: a web page that makes faces, and the JSON/PNG API behind it.

    from facegan.serve import create_app
    app = create_app(facegan.load("runs/mine"))     # a FastAPI app: run it with any ASGI server
"""
from .config import ServeConfig

__all__ = ["ServeConfig", "create_app", "run_server"]


def __getattr__(name: str):
    # FastAPI and uvicorn are imported only when a server is wanted, so `import facegan` stays quick.
    if name == "create_app":
        from .app import create_app

        return create_app
    if name == "run_server":
        from .server import run_server

        return run_server
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
