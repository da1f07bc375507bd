"""Install hook of both hosts: installs only what the host lacks.

The WebUI runs this at start-up (unless started with --skip-install) with its ``launch`` module importable; a
stock WebUI lacks nothing. ComfyUI-Manager runs it as ``python install.py`` in the pack's folder, where there
is no ``launch``: ComfyUI does not ship OpenCV, which reads depth maps at full precision (16-bit colour
ones too), so it is installed there when missing. It is not in a requirements.txt because ComfyUI-Manager
installs those unconditionally, and a second OpenCV distribution beside the user's opencv-python breaks both.
"""

import importlib.util
import subprocess
import sys

# import name -> pip requirement, per host; add here only what the host does not ship
WEBUI_REQUIREMENTS: dict[str, str] = {}
COMFYUI_REQUIREMENTS = {"cv2": "opencv-python-headless"}


def _missing(requirements: dict[str, str]) -> list[str]:
    return [requirement for module, requirement in requirements.items() if importlib.util.find_spec(module) is None]


def _install_in_webui(launch) -> None:
    if not launch.args.skip_install:
        for module, requirement in WEBUI_REQUIREMENTS.items():
            if not launch.is_installed(module):
                launch.run_pip(f"install {requirement}", f"{requirement} for sd-webui-depth2img")


def _install_outside_webui() -> int:
    missing = _missing(COMFYUI_REQUIREMENTS)
    if not missing:
        return 0
    print(f"sd-webui-depth2img: installing {', '.join(missing)}", flush=True)
    return subprocess.call([sys.executable, "-m", "pip", "install", *missing])


try:
    import launch
except ImportError:  # not the WebUI: ComfyUI-Manager, or a person
    launch = None

if launch is not None and hasattr(launch, "run_pip"):
    _install_in_webui(launch)
elif __name__ == "__main__":
    sys.exit(_install_outside_webui())
