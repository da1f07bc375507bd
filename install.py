"""WebUI install hook: installs only what a stock WebUI lacks. Today that is nothing.

The WebUI runs this at start-up unless it was started with --skip-install.
"""

import launch

# import name -> pip requirement; add here only what a stock WebUI does not ship.
REQUIREMENTS: dict[str, str] = {}

if not launch.args.skip_install:
    for module, requirement in REQUIREMENTS.items():
        if not launch.is_installed(module):
            launch.run_pip(f"install {requirement}", f"{requirement} for sd-webui-depth2img")
