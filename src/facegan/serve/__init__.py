"""`facegan serve`: a web page that makes faces, and the JSON/PNG API behind it.

    from facegan.serve import create_app
    app = create_app(facegan.load("runs/mine"))     # a FastAPI app: run it with any ASGI server

The page calls the same Python API a notebook does (`facegan.api`); this package adds the `serve`
command to the API's command table.
"""
from .. import api
from .config import ServeConfig

__all__ = ["ServeConfig", "create_app", "run_server", "serve"]


def serve(config: ServeConfig) -> None:
    """Serve the face page and its API for `config.checkpoint` (the shipped model when unset) until Ctrl-C."""
    from .server import limit_malloc_arenas, run_server

    config.validate()
    limit_malloc_arenas()  # before loading: torch's threads pick their malloc arenas when they first allocate
    run_server(api.load(config.checkpoint, config.device, config.precision), config)


api.register_command(api.Command("serve", "a web page that makes faces, and its JSON/PNG API", ServeConfig, serve))


def __getattr__(name: str):
    # FastAPI and uvicorn are imported only when a server is wanted, so `import facegan` stays quick.
    if name == "create_app":
        from .app import create_app

        return create_app
    if name == "run_server":
        from .server import run_server

        return run_server
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
