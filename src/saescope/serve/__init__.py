"""``saescope serve``: browse a feature index, inspect prompts and steer the model in a browser.

One process, server-rendered pages, a little hand-written JavaScript (``fetch`` + ``innerHTML``)
for the live parts, no Node build.

Why Starlette + uvicorn: Starlette is the small ASGI toolkit FastAPI is built on (routing,
requests, responses, exception handlers, a test client), and uvicorn is the standard ASGI server.
FastAPI would add pydantic request models and generated OpenAPI docs; every request here has a
handful of fields whose limits (prompt tokens, new tokens, samples) depend on the loaded model
and the server's settings, which a few explicit checks in ``params`` state more plainly than
pydantic validators, and the errors they raise are the library's own ``SaescopeError`` messages.
Async routes let many cheap page requests share one thread while model work waits in one queue
(``worker.ModelWorker``): a forward pass never runs twice at once on the shared model.

The index is opened read-only (SQLite ``mode=ro``) and read only through
``interpret.query.FeatureIndex``; killing the server loses nothing.
"""

from __future__ import annotations

from typing import Any

from saescope.errors import SaescopeError


def require_starlette() -> None:
    """Refuse clearly when the web extra is not installed."""
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as err:
        raise SaescopeError(
            f"saescope serve needs the 'serve' extra ({err.name} is missing): "
            "pip install 'saescope[serve]'"
        ) from err


def __getattr__(name: str) -> Any:
    if name in ("create_app", "Limits", "load_served", "Served"):
        from saescope.serve import app, state

        return getattr(app if name == "create_app" else state, name)
    raise AttributeError(f"module 'saescope.serve' has no attribute {name!r}")
