"""Screenshot of the img2img example workflow in the real ComfyUI page (test-only; writes docs/comfyui-img2img.png).

    DEPTH2IMG_COMFYUI_DIR=/path/to/ComfyUI python tests/comfyui/screenshot_comfyui.py [--out PATH]

Starts ComfyUI with this repository as the node pack (or DEPTH2IMG_COMFYUI_PACK), opens its page in Playwright's
Chromium, loads workflows/img2img_depth.json through the page's own app.loadGraphData, runs it once from the page
(so the previews show the picture, its depth and the result), and fails if the page logged an error or the
workflow has a node the page does not know.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).parent
sys.path[:0] = [str(HERE), str(HERE.parent), str(HERE.parent.parent)]

from comfyui_server import ROOT, comfyui_checkpoint, running_comfyui  # noqa: E402
from examples import write_examples  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "comfyui-img2img.png"))
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    comfyui_dir = os.environ["DEPTH2IMG_COMFYUI_DIR"]
    pack = Path(os.environ.get("DEPTH2IMG_COMFYUI_PACK") or ROOT).resolve()
    workflow = json.loads((pack / "workflows" / "img2img_depth.json").read_text())
    for node in workflow["nodes"]:  # a few steps, so the run from the page takes seconds on a CPU
        if node["type"] == "KSampler":
            node["widgets_values"][2] = 4
    with tempfile.TemporaryDirectory() as base, \
            running_comfyui(comfyui_dir, Path(base), comfyui_checkpoint(comfyui_dir), pack) as comfyui:
        write_examples(comfyui.input_dir, size=512)
        # a fresh user folder would greet us with the templates dialog
        comfyui.post("/settings/Comfy.TutorialCompleted", True)
        with sync_playwright() as playwright:
            # Debian's Chromium, as the other browser tests (Playwright's own download may be missing)
            chromium = shutil.which("chromium") or shutil.which("chromium-browser")
            browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1600, "height": 900})
            errors = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(comfyui.url)
            page.wait_for_function("() => window.app && window.app.graph && window.app.canvas", timeout=120_000)
            page.evaluate("workflow => window.app.loadGraphData(workflow)", workflow)
            missing = page.evaluate("() => window.app.graph._nodes.filter(n => n.has_errors || "
                                    "n.constructor.name === 'LGraphNode' && !n.comfyClass).map(n => n.type)")
            assert not missing, f"nodes the page does not know: {missing}"
            page.keyboard.press("Escape")
            page.evaluate("() => window.app.queuePrompt(0, 1)")
            page.wait_for_function("() => window.app.graph._nodes.filter(n => n.type === 'SaveImage')"
                                   ".every(n => n.imgs && n.imgs.length)", timeout=600_000, polling=2000)
            page.wait_for_timeout(1500)
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=args.out)
            browser.close()
        assert not errors, errors
    print(args.out)


if __name__ == "__main__":
    main()
