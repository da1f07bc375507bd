"""What the extension does to one generation, hook by hook, on any host.

``before_process`` reads the settings (a bad one stops the generation); ``process``, when the model
is loaded on every host, decides: for a depth checkpoint it shadows the host's conditioning method
(an instance attribute, removed after its one call; ``hosts`` says which), so the host's own depth
pass never runs, builds the conditioning with the core from each picture of the batch, and puts it
into ``p.image_conditioning`` right before every sampling. Nothing else of the host is changed.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import torch
from modules import devices, shared

from lib_depth2img.checkpoint import estimator_from_weights
from lib_depth2img.depth_cache import DepthCache
from lib_depth2img.depth_source import CheckpointDepth, choose_estimator
from lib_depth2img.errors import Depth2ImgError
from lib_depth2img.estimators import input_spec_for
from lib_depth2img.generation_args import EXTRA_ESTIMATORS, DepthArgs
from lib_depth2img.pipeline import DepthConditioning, condition_depth_map, condition_pictures
from lib_depth2img.tensor_index import TensorInfo
from lib_depth2img.user_depth import RESIZE_MODE_OF_FIT, read_depth_map
from lib_depth2img.webui import extra_estimators, model_loading, option_keys, refiner, txt2img
from lib_depth2img.webui.hosts import Host
from lib_depth2img.webui.pictures import depth_pictures
from lib_depth2img.webui.user_maps import condition_user_maps

XYZ_OVERRIDES_ATTRIBUTE = "depth2img_xyz_overrides"
DEPTH_KIND_INFOTEXT = "Depth2img depth"
NOT_A_DEPTH_MODEL = ("Depth-to-image needs a Stable Diffusion 2 depth checkpoint (such as 512-depth-ema); "
                     "the loaded checkpoint is not one. For SD 1.5 models, use ControlNet's depth model.")


@dataclass
class _Generation:
    args: DepthArgs
    txt2img: bool = False
    depth_model: object = None  # whose depth weights: the loaded model, or a depth refiner's stand-in
    result: DepthConditioning | None = None
    pending_save: int | None = None  # batch index of the picture the WebUI is about to save


_generations: dict[int, _Generation] = {}  # by id(p); the WebUI runs one generation at a time
DEPTH_CACHE = DepthCache()  # emptied whenever a checkpoint loads: the estimator's weights change with it
CHECKPOINT_DEPTH = CheckpointDepth()  # whether the host's network holds the checkpoint's depth weights


HOST: Host | None = None  # set once at start-up by use_host


def use_host(host: Host) -> None:
    global HOST
    HOST = host


def is_depth_model(sd_model) -> bool:
    return sd_model is not None and HOST is not None and HOST.is_depth_model(sd_model)


def _checkpoint_name(sd_model) -> str:
    info = getattr(sd_model, "sd_checkpoint_info", None)
    return getattr(info, "name_for_extra", None) or getattr(info, "title", None) or "This checkpoint"


def estimator(sd_model) -> tuple[torch.nn.Module, str]:
    network = HOST.depth_network(sd_model)
    missing = getattr(network, model_loading.MISSING_ATTRIBUTE, None)
    if missing:
        raise Depth2ImgError(missing)
    index = {k: TensorInfo(tuple(v.shape), "") for k, v in network.state_dict().items()}
    name = estimator_from_weights(index, prefix="")
    if name is None or name == "unknown":
        raise Depth2ImgError("The depth checkpoint's MiDaS network is of a kind this extension does not know.")
    return network, name


def run_on_compute_device(sd_model) -> None:
    """--lowvram/--medvram move the depth network to the GPU in a forward pre-hook of ``depth_model``,
    which calling its inner network skips; run those hooks as the native path would trigger them."""
    depth_model = sd_model.depth_model
    for hook in list(depth_model._forward_pre_hooks.values()):
        hook(depth_model, ())
    if _moved_by_setting(sd_model):
        depth_model.to(devices.device)


def args_for(p, script_args) -> DepthArgs:
    """The script's arguments, with any XYZ-plot cell values on top."""
    return DepthArgs.from_named(getattr(p, XYZ_OVERRIDES_ATTRIBUTE, {}), DepthArgs.from_script_args(script_args))


def before_process(p, script_args) -> None:
    """Reads the settings; the model may not be loaded yet (Forge loads it after this hook)."""
    _generations.clear()  # one generation at a time: what a failed one left goes now, not never
    try:
        args = args_for(p, script_args)
    except Depth2ImgError as error:  # a bad setting: the person who made it must see it, and nothing is made
        stop_before_init(p, str(error))
        return
    _generations[id(p)] = _Generation(args, txt2img=is_txt2img(p))


def is_txt2img(p) -> bool:
    return not hasattr(p, "init_images")


def depth_kind(args: DepthArgs, other_picture: bool) -> str:
    """Which kind of depth conditions the generation, for the infotext."""
    if args.depth_source == "upload":
        return "map"
    return "picture for depth" if other_picture else "init picture"


def process(p) -> None:
    """The model is loaded now: take over its depth path, or step aside (the generation's state goes)."""
    generation = _generations.pop(id(p), None)
    if generation is None:
        return
    args = generation.args
    depth_refiner = refiner.depth_refiner(p) if HOST is not None else None
    if not is_depth_model(p.sd_model) and depth_refiner is not None:
        problem = refiner.why_not(p, depth_refiner, args.enabled, HOST.plain_models_ignore_concat)
        if problem:
            stop_before_init(p, problem)
            return
        generation.depth_model = refiner.stand_in(depth_refiner)
        p.extra_generation_params[refiner.INFOTEXT] = refiner.title(depth_refiner)
    elif not is_depth_model(p.sd_model):
        if args.enabled and args != DepthArgs():  # the user changed a depth setting, so they expect depth
            p.comment(NOT_A_DEPTH_MODEL)
        return
    else:
        generation.depth_model = p.sd_model
        if depth_refiner is not None:  # the base's depth conditioning serves the refiner's steps too
            p.extra_generation_params[refiner.INFOTEXT] = refiner.title(depth_refiner)
    if not args.enabled:
        if generation.txt2img:
            stop_before_init(p, f"{_checkpoint_name(p.sd_model)} is a depth-to-image model: txt2img needs the "
                                "depth to keep. Switch Depth-to-image on and give a depth map or a picture for "
                                "depth in its accordion, or use img2img.")
        elif not HOST.has_own_depth_path:
            stop_before_init(p, f"{_checkpoint_name(p.sd_model)} is a depth-to-image model and {HOST.name} has no "
                                "depth path of its own: switch Depth-to-image on in its accordion (through the "
                                "API: \"enabled\": true), or pick another checkpoint.")
        return
    try:
        args.check_ready_to_generate(txt2img=generation.txt2img)
        if args.depth_source in EXTRA_ESTIMATORS:
            extra_estimators.check_available(args.depth_source)
    except Depth2ImgError as error:
        stop_before_init(p, str(error))
        return
    _generations[id(p)] = generation
    p.extra_generation_params.update(args.infotext(txt2img=generation.txt2img))
    p.extra_generation_params[DEPTH_KIND_INFOTEXT] = depth_kind(args, generation.txt2img)  # img2img: see below
    if generation.txt2img:
        txt2img.take_over(p, lambda latent_size, dtype: _txt2img_depth(p, generation, latent_size, dtype),
                          keep=lambda result: setattr(generation, "result", result))
        return

    # A plain base never calls the depth method: its img2img_image_conditioning (same first argument) is taken.
    method = HOST.conditioning_method if generation.depth_model is p.sd_model else "img2img_image_conditioning"

    def depth_conditioning(source_image: torch.Tensor, *_host_arguments, **_host_keywords) -> torch.Tensor:
        p.__dict__.pop(method, None)  # one call per init; p is as it was afterwards
        latent_size, dtype = tuple(p.init_latent.shape[-2:]), p.init_latent.dtype
        if args.depth_source == "upload":
            generation.result = condition_user_maps(p, args, latent_size, dtype)
        else:
            pictures, other_picture = depth_pictures(p, source_image, args)
            p.extra_generation_params[DEPTH_KIND_INFOTEXT] = depth_kind(args, other_picture)
            generation.result = _estimate(generation, pictures, latent_size, dtype)
        return _batch_conditioning(generation, p.init_latent)

    setattr(p, method, depth_conditioning)


@contextmanager
def depth_network(sd_model, source: str):
    """The estimator for ``source`` with its input spec, on the compute device while in use.

    Depth comes from the checkpoint's own weights: the host's network when it holds them (no second
    copy), else our estimator loaded from the checkpoint file. A checkpoint that carries none takes the
    host's network as the host filled it (from models/midas), or on a host without one the release file
    (``lib_depth2img.depth_source``)."""
    checkpoint = sd_model.sd_checkpoint_info.filename if source == "checkpoint" else None
    choice = choose_estimator(source, checkpoint=checkpoint, host_network=HOST.depth_network(sd_model),
                              folders=extra_estimators.folders, checkpoint_depth=CHECKPOINT_DEPTH,
                              checkpoint_label=_checkpoint_name(sd_model))
    if choice.weights is None:
        network, name = estimator(sd_model)
        run_on_compute_device(sd_model)
        try:
            yield network, input_spec_for(name)
        finally:
            offload(sd_model)
        return
    if choice.from_checkpoint:
        network = extra_estimators.load_from_checkpoint(checkpoint, choice.name)
    else:
        network = extra_estimators.load(choice.name)
    try:
        yield network, network.input_spec
    finally:
        extra_estimators.release()


def _txt2img_depth(p, generation: _Generation, latent_size, dtype) -> DepthConditioning:
    args = generation.args
    if args.depth_source == "upload":
        return condition_depth_map(read_depth_map(args.depth_map), (p.height, p.width), latent_size,
                                   resize_mode=RESIZE_MODE_OF_FIT[args.fit], adjustments=args.adjustments(),
                                   dtype=dtype)
    return _estimate(generation, txt2img.fitted_picture(p, args), latent_size, dtype)


def _estimate(generation: _Generation, pictures: torch.Tensor, latent_size, dtype) -> DepthConditioning:
    args = generation.args
    with depth_network(generation.depth_model, args.depth_source) as (network, spec):
        return condition_pictures(network, pictures, latent_size, input_spec=spec, adjustments=args.adjustments(),
                                  dtype=dtype, cache=DEPTH_CACHE)


def offload(sd_model) -> None:
    if _moved_by_setting(sd_model):
        sd_model.depth_model.to(devices.cpu)


def _moved_by_setting(sd_model) -> bool:
    """The setting moves the network; under --lowvram/--medvram the WebUI's own hooks do instead."""
    return shared.opts.data.get(option_keys.MOVE_TO_CPU, False) and not getattr(sd_model, "lowvram", False)


def _batch_conditioning(generation: _Generation, init_latent: torch.Tensor) -> torch.Tensor:
    conditioning = generation.result.conditioning
    if conditioning.shape[0] == 1 and init_latent.shape[0] > 1:
        conditioning = conditioning.expand(init_latent.shape[0], -1, -1, -1)
    return conditioning.to(device=init_latent.device, dtype=init_latent.dtype)


def process_before_every_sampling(p) -> None:
    generation = _generations.get(id(p))
    if generation is not None and generation.result is not None and not generation.txt2img:
        p.image_conditioning = _batch_conditioning(generation, p.init_latent)


def generation_for(p) -> _Generation | None:
    """The depth state of ``p``'s generation once its conditioning exists, else None."""
    generation = _generations.get(id(p))
    return generation if generation is not None and generation.result is not None else None


def finish(p) -> _Generation | None:
    """Ends ``p``'s generation: ``p`` loses anything of ours left on it; returns the state for the results."""
    for method in (HOST.conditioning_method, *txt2img.CONDITIONING_METHODS) if HOST is not None else ():
        p.__dict__.pop(method, None)
    generation = _generations.pop(id(p), None)
    return generation if generation is not None and generation.result is not None else None


def stop_before_init(p, message: str) -> None:
    """Stops the generation with ``message`` before any work.

    Script hooks' exceptions are caught and only logged by the WebUI, so the stop is put into
    ``p.init``, which ``process_images`` calls directly, before sampling and before writing anything;
    the UI shows it in its error box, the API as its error.
    """
    def init(*args, **kwargs):
        p.__dict__.pop("init", None)
        raise Depth2ImgError(message)

    p.init = init


def forget_depth(sd_model=None) -> None:
    """on_model_loaded: a new checkpoint brings new estimator weights, so cached depth is stale, and
    whether the host's network holds them must be told again."""
    DEPTH_CACHE.clear()
    CHECKPOINT_DEPTH.forget()
