"""``GET /depth2img/checkpoint?title=...``: is this listed checkpoint a depth model? For the page's javascript.
And ``POST /depth2img/v1/depth`` (``depth_route``), for scripts.

Only titles (or other names) the WebUI lists are looked up, never paths; anything else is a 404.
The answer comes from the core's detection: the yaml first, then header-only reads, cached.
"""

from __future__ import annotations

from lib_depth2img.checkpoint import inspect_checkpoint
from lib_depth2img.errors import Depth2ImgError
from lib_depth2img.webui import depth_route

ROUTE = "/depth2img/checkpoint"


def checkpoint_verdict(title: str) -> dict | None:
    from modules import sd_models

    info = sd_models.checkpoint_aliases.get(title)
    if info is None:
        return None
    try:
        verdict = inspect_checkpoint(info.filename)
    except Depth2ImgError as error:
        return {"title": info.title, "is_depth": False, "estimator": None, "reason": str(error)}
    return {"title": info.title, "is_depth": verdict.is_depth, "estimator": verdict.estimator, "reason": verdict.reason}


def register_routes(_demo, app) -> None:
    from fastapi import HTTPException

    def checkpoint(title: str) -> dict:
        verdict = checkpoint_verdict(title)
        if verdict is None:
            raise HTTPException(status_code=404, detail="not a checkpoint the WebUI lists")
        return verdict

    app.add_api_route(ROUTE, checkpoint, methods=["GET"])
    depth_route.register(app)
