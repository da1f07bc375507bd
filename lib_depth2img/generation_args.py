"""Every setting of a depth generation, defined once: name, default, label, infotext key, help, range.

The WebUI's controls, the API's named and positional arguments, the infotext and the XYZ
plot all derive from ``DepthArgs``; nothing repeats a setting's name or default elsewhere.
Positional API arguments follow the field order, so new settings are only ever appended.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from lib_depth2img.adjustments import ADJUSTMENT_BOUNDS, DepthAdjustments
from lib_depth2img.errors import Depth2ImgError
from lib_depth2img.estimators import CHECKPOINT_ESTIMATOR, ESTIMATORS
from lib_depth2img.picture_data import FORMAT_NAMES, MAX_PICTURE_PIXELS
from lib_depth2img.user_depth import RESIZE_MODE_OF_FIT

# the checkpoint's own MiDaS, a map the person brings, or another estimator from its own weights file
EXTRA_ESTIMATORS = tuple(name for name in ESTIMATORS if name != CHECKPOINT_ESTIMATOR)
DEPTH_SOURCES = ("checkpoint", "upload", *EXTRA_ESTIMATORS)
FIT_MODES = tuple(RESIZE_MODE_OF_FIT)
PICTURE_SETTINGS = ("depth_map", "depth_picture")  # pictures, never written into infotexts
_PIXEL_LIMIT = f"{MAX_PICTURE_PIXELS / 1e6:g} megapixels"
_THROUGH_THE_API = "Through the API: the file's bytes in base64 (a data URL too), never a file name or path."


def _sources_help() -> str:
    lines = [f"{name}: {spec.description}" + (f" Licence {spec.licence}: non-commercial use only."
                                              if spec.non_commercial else "")
             for name, spec in ESTIMATORS.items() if name in EXTRA_ESTIMATORS]
    return ("checkpoint: the depth checkpoint's own MiDaS estimates depth from the picture. upload: a depth map you "
            "bring (white = near). The others need their weights file: " + " ".join(lines))


def _setting(default, label: str, infotext: str | None, help: str, choices: tuple = (),
             bounds: tuple[float, float, float] | None = None, tabs: tuple[str, ...] = ("txt2img", "img2img")):
    return field(default=default, metadata={"label": label, "infotext": infotext, "help": help, "choices": choices,
                                            "bounds": bounds, "tabs": tabs})


@dataclass(frozen=True)
class DepthArgs:
    enabled: bool = _setting(True, "Depth-to-image", "Depth2img",
                             "Build the depth conditioning with this extension (off: the WebUI's own depth path).")
    depth_source: str = _setting("checkpoint", "Depth source", "Depth2img source",
                                 _sources_help(), DEPTH_SOURCES)
    invert: bool = _setting(False, "Invert depth", "Depth2img invert", "Swap near and far.")
    depth_from_original: bool = _setting(
        True, "Estimate depth from the original picture (inpaint)", "Depth2img from original",
        "With 'Masked content' fill or latent noise/nothing, estimate depth from the untouched picture, "
        "not from what fills the mask.", tabs=("img2img",))
    add_depth_to_results: bool = _setting(False, "Add the depth map to the results", "Depth2img map in results",
                                          "Show the depth map that conditioned each picture after the pictures.")
    near: float = _setting(1.0, "Near level", "Depth2img near", "Depth at or above this level (0-1) becomes nearest.",
                           bounds=ADJUSTMENT_BOUNDS["near"])
    far: float = _setting(0.0, "Far level", "Depth2img far", "Depth at or below this level (0-1) becomes farthest.",
                          bounds=ADJUSTMENT_BOUNDS["far"])
    gamma: float = _setting(1.0, "Depth gamma", "Depth2img gamma",
                            "Above 1 pushes middle distances away, below 1 pulls them near.",
                            bounds=ADJUSTMENT_BOUNDS["gamma"])
    blur: float = _setting(0.0, "Depth blur", "Depth2img blur",
                           "Softens the depth map; Gaussian radius in percent of its shorter side.",
                           bounds=ADJUSTMENT_BOUNDS["blur"])
    depth_map: object = _setting(None, "Depth map", None,
                                 f"{FORMAT_NAMES}; 8 or 16 bits; grayscale or colour; at most {_PIXEL_LIMIT}. "
                                 f"{_THROUGH_THE_API}")
    depth_map_folder: str = _setting("", "Depth folder (img2img Batch tab)", None,
                                     "A file named like each input picture: its depth map with the upload source, "
                                     "else the picture to estimate its depth from.", tabs=("img2img",))
    depth_picture: object = _setting(None, "Picture for depth", None,
                                     "Depth (pose, composition) is estimated from this picture and its colours are "
                                     "left out. txt2img: needed with an estimator source. img2img: optional; the "
                                     f"init picture gives the colours, this one the depth. {_THROUGH_THE_API}")
    fit: str = _setting("crop", "Fit to the txt2img size", "Depth2img fit",
                        "How a depth map or picture of another aspect ratio fits the txt2img size: crop it, stretch "
                        "it, or fit it inside and fill the rest from its edges.", FIT_MODES, tabs=("txt2img",))

    def __post_init__(self):
        for spec in dataclasses.fields(self):
            value = getattr(self, spec.name)
            if spec.name in PICTURE_SETTINGS:
                if value is not None and not isinstance(value, (str, bytes, bytearray)) and not hasattr(value, "size"):
                    raise Depth2ImgError(f"Depth-to-image setting '{spec.name}' must be a picture, base64 text or "
                                         f"bytes, got {type(value).__name__}.")
                continue
            if isinstance(spec.default, float) and type(value) is int:
                object.__setattr__(self, spec.name, float(value))  # JSON has one number type
                value = float(value)
            if type(value) is not type(spec.default):
                raise Depth2ImgError(f"Depth-to-image setting '{spec.name}' must be {_accepted(spec)}; "
                                     f"got {value!r}.")
            if spec.metadata["choices"] and value not in spec.metadata["choices"]:
                raise Depth2ImgError(f"Depth-to-image setting '{spec.name}' must be one of "
                                     f"{', '.join(spec.metadata['choices'])}; got {value!r}.")
        self.adjustments()  # checks the ranges, with a message that says which

    def check_ready_to_generate(self, txt2img: bool = False) -> None:
        """What a generation needs beyond valid values: a map for the upload source; in txt2img, which has no
        picture of its own, a map or a picture for depth."""
        if not self.enabled:
            return
        if self.depth_source == "upload" and self.depth_map is None and (txt2img or not self.depth_map_folder):
            raise Depth2ImgError("Depth-to-image setting 'depth_source' is 'upload' but no depth map was given: "
                                 "upload one in the Depth-to-image accordion (through the API: 'depth_map' as "
                                 "base64), or choose another depth source.")
        if txt2img and self.depth_source != "upload" and self.depth_picture is None:
            given = (" A depth map was given: set the depth source to 'upload' to use it."
                     if self.depth_map is not None else "")
            raise Depth2ImgError(f"txt2img with a depth model needs the depth to keep: give a depth map (depth "
                                 f"source 'upload') or a picture for depth in the Depth-to-image accordion (through "
                                 f"the API: 'depth_map' or 'depth_picture' as base64), or use img2img.{given}")

    def adjustments(self) -> DepthAdjustments:
        return DepthAdjustments(self.invert, self.near, self.far, self.gamma, self.blur)

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(spec.name for spec in dataclasses.fields(cls))

    @classmethod
    def from_named(cls, values: Mapping[str, object], base: DepthArgs | None = None) -> DepthArgs:
        unknown = sorted(set(values) - set(cls.names()))
        if unknown:
            raise Depth2ImgError(f"Unknown depth-to-image setting(s) {', '.join(unknown)}; "
                                 f"known: {', '.join(cls.names())}.")
        return dataclasses.replace(base or cls(), **values)

    @classmethod
    def from_script_args(cls, args: Sequence) -> DepthArgs:
        """The script's arguments as the WebUI passes them: the positional list in field order
        (possibly shorter), or a dict of named settings anywhere in it, which then ends the list."""
        args = list(args)
        named = {}
        for index, value in enumerate(args):
            if isinstance(value, Mapping):
                # The API fills the positions after the caller's own with the UI defaults: drop those.
                args, named = args[:index], value
                break
        if len(args) > len(cls.names()):
            raise Depth2ImgError(f"Depth-to-image takes at most {len(cls.names())} positional settings "
                                 f"({', '.join(cls.names())}), got {len(args)}.")
        positional = dict(zip(cls.names(), args, strict=False))
        return cls.from_named({**positional, **named})

    def to_script_args(self) -> list:
        return [getattr(self, name) for name in self.names()]

    def infotext(self, txt2img: bool = False) -> dict[str, object]:
        tab = "txt2img" if txt2img else "img2img"
        return {spec.metadata["infotext"]: getattr(self, spec.name) for spec in dataclasses.fields(self)
                if spec.metadata["infotext"] and tab in spec.metadata["tabs"]}

    @classmethod
    def from_infotext(cls, params: Mapping[str, str]) -> dict[str, object]:
        """The settings an infotext names, parsed to their types; absent or unreadable ones are left out."""
        values = {}
        for spec in dataclasses.fields(cls):
            raw = params.get(spec.metadata["infotext"]) if spec.metadata["infotext"] else None
            if raw is None:
                continue
            if isinstance(spec.default, bool):
                values[spec.name] = str(raw).strip().lower() == "true"
            elif isinstance(spec.default, float):
                try:
                    values[spec.name] = float(raw)
                except ValueError:
                    continue
            else:
                values[spec.name] = str(raw)
        return values


def _accepted(spec: dataclasses.Field) -> str:
    if spec.metadata["bounds"]:
        low, high, _ = spec.metadata["bounds"]
        return f"a number from {low:g} to {high:g}"
    if spec.metadata["choices"]:
        return f"one of {', '.join(spec.metadata['choices'])}"
    return {bool: "true or false", str: "text"}.get(type(spec.default), type(spec.default).__name__)


def setting_metadata(name: str) -> Mapping[str, object]:
    """Label, infotext key, help, choices and bounds of one setting, for building controls."""
    return next(spec.metadata for spec in dataclasses.fields(DepthArgs) if spec.name == name)
