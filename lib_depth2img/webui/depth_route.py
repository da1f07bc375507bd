"""``POST /depth2img/v1/depth``: a picture's depth map for scripts, with the settings a generation uses.

The request's schema is built from ``DepthArgs`` (names, defaults, help, ranges), so ``/docs`` says what
each field means. It runs under the WebUI's queue lock, as generations do, and goes through the depth
cache. Sources are looked up by name only, never by path, and the picture is data, never a file name;
its kind and size are checked from its header, and the map's size is bounded, before anything is
decoded or allocated. Bad input is a 4xx with a message.
"""

from __future__ import annotations

import base64
import time
from typing import Literal

from lib_depth2img.checkpoint import inspect_checkpoint
from lib_depth2img.depth_image import depth_png
from lib_depth2img.errors import Depth2ImgError
from lib_depth2img.generation_args import EXTRA_ESTIMATORS, DepthArgs, setting_metadata
from lib_depth2img.picture_data import FORMAT_NAMES, MAX_PICTURE_BYTES, MAX_PICTURE_PIXELS
from lib_depth2img.picture_files import open_picture, reduced_for_estimation
from lib_depth2img.pipeline import condition_pictures
from lib_depth2img.webui import extra_estimators, generation, preview
from lib_depth2img.webui.pictures import pil_to_tensor

ROUTE = "/depth2img/v1/depth"
ADJUSTMENTS = ("invert", "near", "far", "gamma", "blur")
MAX_SIDE = 16384
MAX_MAP_PIXELS = MAX_PICTURE_PIXELS  # the map's default size is the picture's, so both have the one limit
_LIMIT = f"{MAX_PICTURE_PIXELS / 1e6:g} megapixels"


def request_model():
    from pydantic import Field, create_model

    def setting(name: str):
        meta, default = setting_metadata(name), getattr(DepthArgs(), name)
        bounds = {"ge": meta["bounds"][0], "le": meta["bounds"][1]} if meta["bounds"] else {}
        return type(default), Field(default, description=meta["help"], **bounds)

    sources = tuple(name for name in setting_metadata("depth_source")["choices"] if name != "upload")
    return create_model(
        "Depth2ImgDepthRequest",
        image=(str, Field(..., description=f"The picture: base64 (a data URL too) of a {FORMAT_NAMES} file of at "
                                            f"most {_LIMIT} and {MAX_PICTURE_BYTES // 2**20} MiB. Never a file name "
                                            "or path.")),
        source=(Literal[sources], Field("checkpoint", description="checkpoint: the loaded depth checkpoint's own "
                                         "MiDaS. The others need their weights file: "
                                         f"{extra_estimators.where_files_go()}.")),
        **{name: setting(name) for name in ADJUSTMENTS},
        width=(int | None, Field(None, ge=1, le=MAX_SIDE, description="Width of the map; default: the "
                                    "picture's, or kept in proportion to a given height. Width x height: at most "
                                    f"{_LIMIT}.")),
        height=(int | None, Field(None, ge=1, le=MAX_SIDE, description="Height of the map, likewise.")),
        bits=(Literal[8, 16], Field(8, description="8 or 16-bit grayscale PNG; white = near.")),
    )


def response_model():
    from pydantic import Field, create_model

    return create_model(
        "Depth2ImgDepthResponse",
        image=(str, Field(..., description="The depth map: base64 of a grayscale PNG, white = near.")),
        estimator=(str, Field(..., description="The estimator that made it, e.g. dpt_hybrid.")),
        width=(int, ...), height=(int, ...), bits=(int, ...),
        seconds=(float, Field(..., description="Time to make the map, without waiting for the queue.")),
        cached=(bool, Field(..., description="True when the estimate came from the depth cache.")),
    )


def _output_size(picture_size: tuple[int, int], width: int | None, height: int | None) -> tuple[int, int]:
    picture_height, picture_width = picture_size
    if width and height:
        return height, width
    if width:
        return max(1, round(picture_height * width / picture_width)), width
    if height:
        return height, max(1, round(picture_width * height / picture_height))
    return picture_height, picture_width


def _checked_map_size(size: tuple[int, int]) -> tuple[int, int]:
    if size[0] * size[1] > MAX_MAP_PIXELS:
        raise Depth2ImgError(f"A depth map of {size[1]}x{size[0]} pixels was asked for, above the limit of {_LIMIT}: "
                             "ask for a smaller width or height.")
    return size


def _estimator_name(sd_model, source: str) -> str:
    if source in EXTRA_ESTIMATORS:
        return source
    return inspect_checkpoint(sd_model.sd_checkpoint_info.filename).estimator or "dpt_hybrid"


def make_depth(request) -> dict:
    """The depth map the request asks for; ``Depth2ImgError`` for what the caller must change."""
    sd_model = preview._model_to_preview()
    if request.source == "checkpoint" and not generation.is_depth_model(sd_model):
        others = (", ".join(extra_estimators.available())
                  or f"none has its weights file: {extra_estimators.where_files_go()}")
        raise Depth2ImgError("Source 'checkpoint' needs a depth checkpoint (such as 512-depth-ema) and the selected "
                             f"one is not: select one, or ask for another source ({others}).")
    if request.source in EXTRA_ESTIMATORS:
        extra_estimators.check_available(request.source)
    args = DepthArgs(**{name: getattr(request, name) for name in ADJUSTMENTS})
    if request.width and request.height:  # refused before the picture is even decoded
        _checked_map_size((request.height, request.width))
    picture = open_picture(request.image)
    size = _checked_map_size(_output_size((picture.height, picture.width), request.width, request.height))
    rgb = pil_to_tensor(reduced_for_estimation(picture))[None]
    del picture  # the map at full size is made next: the picture's memory is free for it
    start, hits = time.perf_counter(), generation.DEPTH_CACHE.hits
    with generation.depth_network(sd_model, request.source) as (network, spec):
        depth = condition_pictures(network, rgb, (1, 1), input_spec=spec, adjustments=args.adjustments(),
                                   cache=generation.DEPTH_CACHE).depth
    del rgb
    png = depth_png(depth[0], request.bits, size)
    return {"image": base64.b64encode(png).decode(), "estimator": _estimator_name(sd_model, request.source),
            "height": size[0], "width": size[1], "bits": request.bits,
            "seconds": round(time.perf_counter() - start, 4), "cached": generation.DEPTH_CACHE.hits > hits}


def _route_class():
    """FastAPI's route, but a request it refuses gets a 422 that lists what is wrong without echoing the input:
    pydantic 2 echoes it, and a JSON ``NaN`` in the echo made the answer itself fail (a 500)."""
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from fastapi.routing import APIRoute

    class PlainRefusalRoute(APIRoute):
        def get_route_handler(self):
            handle = super().get_route_handler()

            async def handle_plainly(request):
                try:
                    return await handle(request)
                except RequestValidationError as error:
                    detail = [{"loc": list(each.get("loc", ())), "msg": str(each.get("msg", "")),
                               "type": str(each.get("type", ""))} for each in error.errors()]
                    return JSONResponse(status_code=422, content={"detail": detail})

            return handle_plainly

    return PlainRefusalRoute


def register(app) -> None:
    from fastapi import HTTPException
    from modules.call_queue import queue_lock

    request_type, response_type = request_model(), response_model()

    def depth(request):
        with queue_lock:
            try:
                return make_depth(request)
            except Depth2ImgError as error:
                raise HTTPException(status_code=400, detail=str(error)) from error

    depth.__annotations__ = {"request": request_type, "return": response_type}  # FastAPI reads the types here
    app.router.add_api_route(
        ROUTE, depth, methods=["POST"], response_model=response_type, route_class_override=_route_class(),
        summary="The depth map of a picture",
        description="Depth as Depth-to-image makes it for a generation: the source, the adjustments, then fitted to "
                    f"the size asked for (8 or 16-bit PNG, base64). The picture comes as base64 data ({FORMAT_NAMES}, "
                    f"kind checked from its bytes), never as a file name; the picture and the map are each at most "
                    f"{_LIMIT}.")
