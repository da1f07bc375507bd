"""javascript/depth2img.js in headless Chromium, on a small page with the elements it reads and a stub route."""

from __future__ import annotations

import json
import os
import shutil
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

ROOT = Path(__file__).parent.parent.parent
ARTIFACTS = Path(os.environ.get("DEPTH2IMG_ARTIFACTS", ROOT / "test-artifacts"))
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DEPTH = "512-depth-ema.safetensors [ece2ee48b4]"
PLAIN = "v2-1_768-ema-pruned.safetensors [ad2a33c361]"
BROKEN = "broken.safetensors"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
                 "--disable-background-networking", "--disable-component-update"]

sync_api = pytest.importorskip("playwright.sync_api", reason="browser tests need playwright (pip install playwright)")
if CHROMIUM is None:
    pytest.skip("browser tests need Debian's chromium (apt-get install chromium)", allow_module_level=True)


class Handler(SimpleHTTPRequestHandler):
    asked: list[str] = []

    def __init__(self, *args, **kwargs):
        super().__init__(*args, directory=str(ROOT), **kwargs)

    def log_message(self, *args):
        pass

    def do_GET(self):
        url = urlparse(self.path)
        if url.path == "/":
            self.path = "/tests/browser/page.html"
            return super().do_GET()
        if url.path == "/depth2img/checkpoint":
            title = parse_qs(url.query).get("title", [""])[0]
            Handler.asked.append(title)
            if title == BROKEN:
                return self.send_error(500, "the route failed")
            body = json.dumps({"title": title, "is_depth": title == DEPTH,
                               "estimator": "dpt_hybrid" if title == DEPTH else None, "reason": "stub"}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            return self.wfile.write(body)
        return super().do_GET()


@pytest.fixture(scope="module")
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()


@pytest.fixture()
def page(server):
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.errors = []
        page.on("pageerror", lambda error: page.errors.append(str(error)))
        page.goto(server)
        yield page
        browser.close()


def _pick(page, title: str) -> None:
    page.evaluate("title => pickCheckpoint(title)", title)


def _screenshot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def _status(page, tab: str) -> str:
    """The status line as gradio nests it: the id on the block and on the element inside, which is written."""
    return page.locator(f"#depth2img_{tab}_status div").text_content()


def test_notice_follows_the_checkpoint_dropdown(page):
    notice = page.locator("#depth2img_txt2img_notice")
    _pick(page, DEPTH)
    notice.wait_for(state="visible")
    assert notice.text_content().startswith(DEPTH + " is a depth-to-image model")
    assert _status(page, "img2img") == "Depth is active: dpt_hybrid depth from the checkpoint."
    assert "give a depth map (source 'upload') or a picture for depth" in _status(page, "txt2img")
    assert page.locator("#depth2img_img2img_status").first.evaluate("e => e.childNodes[0].nodeType") == 1  # inner
    # (the notice and the status are rendered together, from one answer of the route)
    # the notice sits right above the Generate box
    assert page.evaluate("document.querySelector('#depth2img_txt2img_notice').nextElementSibling.id") == \
        "txt2img_generate_box"
    _screenshot(page, "browser-stub-depth-selected")
    _pick(page, PLAIN)
    notice.wait_for(state="detached")
    page.wait_for_function("() => document.querySelector('#depth2img_img2img_status div').textContent.includes("
                           "'needs a depth checkpoint')")  # once the route has answered
    _screenshot(page, "browser-stub-plain-selected")
    _pick(page, DEPTH)
    notice.wait_for(state="visible")
    assert page.locator("#depth2img_txt2img_notice").count() == 1  # never twice
    assert page.errors == []


def test_options_change_alone_is_enough(page):
    page.evaluate("t => { opts.sd_model_checkpoint = t; executeCallbacks(optionsChangedCallbacks); }", DEPTH)
    page.locator("#depth2img_txt2img_notice").wait_for(state="visible")


def test_a_failing_route_breaks_nothing(page):
    _pick(page, DEPTH)
    page.locator("#depth2img_txt2img_notice").wait_for(state="visible")
    _pick(page, BROKEN)
    page.locator("#depth2img_txt2img_notice").wait_for(state="detached")
    page.wait_for_timeout(300)
    assert _status(page, "img2img") == _status(page, "txt2img") == ""
    page.click("#other_button")
    assert page.locator("#other_button").text_content() == "clicked"
    _pick(page, DEPTH)  # and it keeps working afterwards
    page.locator("#depth2img_txt2img_notice").wait_for(state="visible")
    assert page.errors == []


def test_missing_markup_means_no_notice_and_no_error(page):
    page.evaluate("document.querySelector('#tab_txt2img').remove(); document.querySelector('#tab_img2img').remove()")
    _pick(page, DEPTH)
    page.wait_for_timeout(500)
    assert page.locator("#depth2img_txt2img_notice").count() == 0
    assert page.errors == []


def test_no_global_leaks(page):
    page_globals = page.evaluate("Object.keys(window).filter(k => /depth/i.test(k))")
    assert page_globals == []


def test_forges_checkpoint_dropdown_is_followed_too(page):
    """Forge's dropdown has no id, only the class model_selection, and there is no quicksettings one."""
    page.evaluate("""() => {
        const original = document.querySelector('#setting_sd_model_checkpoint');
        const forge = document.createElement('div');
        forge.className = 'gradio-dropdown model_selection';
        forge.innerHTML = '<label>Checkpoint</label><input value="">';
        original.parentElement.replaceChild(forge, original);
    }""")
    page.evaluate("t => { document.querySelector('.model_selection input').value = t; "
                  "document.body.appendChild(document.createElement('span')); }", DEPTH)  # a DOM update
    page.locator("#depth2img_txt2img_notice").wait_for(state="visible")
    assert _status(page, "img2img") == "Depth is active: dpt_hybrid depth from the checkpoint."
    assert page.errors == []


def test_txt2img_status_says_what_the_accordion_holds(page):
    _pick(page, DEPTH)
    asks_for_depth = "give a depth map (source 'upload') or a picture for depth"
    page.wait_for_function("() => document.querySelector('#depth2img_txt2img_status div').textContent !== ''")
    assert asks_for_depth in _status(page, "txt2img")
    page.evaluate("() => { chooseSource('upload'); giveFile('depth_map', true); }")
    page.wait_for_function("() => document.querySelector('#depth2img_txt2img_status div').textContent"
                           ".includes('uploaded depth map is kept')")
    page.evaluate("() => giveFile('depth_map', false)")
    page.wait_for_function(f"() => document.querySelector('#depth2img_txt2img_status div').textContent"
                           f".includes({asks_for_depth!r})")
    page.evaluate("() => { chooseSource('checkpoint'); giveFile('depth_picture', true); }")
    page.wait_for_function("() => document.querySelector('#depth2img_txt2img_status div').textContent"
                           ".includes('the picture for depth gives its dpt_hybrid depth')")
    assert _status(page, "img2img") == "Depth is active: dpt_hybrid depth from the checkpoint."
    assert page.errors == []
