"""POST /depth2img/v1/depth, through FastAPI's own test client, against the WebUI imitation."""

import base64
import io
from pathlib import Path

import numpy as np
import pytest
import torch
from crafted_pictures import EPS, png_claiming
from PIL import Image
from reference import depth_by_the_rule
from webui_helpers import DPT_INPUT_OF_A_192x128_PICTURE, FakeSDModel, _as_tensor, _picture

from lib_depth2img.depth_image import depth_to_image

fastapi = pytest.importorskip("fastapi", reason="the depth endpoint is a FastAPI route, as the WebUI's API")
pytest.importorskip("httpx", reason="FastAPI's test client needs httpx")


@pytest.fixture()
def client(webui):
    from fastapi.testclient import TestClient

    from lib_depth2img.webui import routes

    app = fastapi.FastAPI()
    routes.register_routes(None, app)
    return TestClient(app)


def _encoded(picture) -> str:
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def _decoded(text: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(text)))


def test_depth_in_8_and_16_bits_at_the_size_asked(client, depth_model):
    model, counter = depth_model
    picture = _picture()
    answer = client.post("/depth2img/v1/depth", json={"image": _encoded(picture)})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["estimator"] == "dpt_hybrid" and body["bits"] == 8 and body["cached"] is False
    assert body["seconds"] > 0 and (body["width"], body["height"]) == (192, 128)
    eight = _decoded(body["image"])
    assert eight.mode == "L" and eight.size == (192, 128) and counter.batches == [1]
    depth = depth_by_the_rule(model.depth_model.model, _as_tensor(picture), DPT_INPUT_OF_A_192x128_PICTURE)[0]
    # as the results' depth maps: stretched at the estimator's size, then resized (here by Pillow)
    expected = np.asarray(depth_to_image(depth).resize((192, 128), Image.BILINEAR), dtype=np.float64)
    assert np.abs(np.asarray(eight, dtype=np.float64) - expected).mean() < 1.0
    answer = client.post("/depth2img/v1/depth", json={"image": _encoded(picture), "bits": 16, "width": 96,
                                                      "invert": True})
    body = answer.json()
    sixteen = _decoded(body["image"])
    assert sixteen.mode.startswith("I") and sixteen.size == (96, 64) and body["cached"] is True
    levels = np.asarray(sixteen, dtype=np.float64) / 65535
    assert len(np.unique(levels)) > 256  # more levels than 8 bits hold
    halved = np.asarray(eight.resize((96, 64)), dtype=np.float64) / 255
    assert np.corrcoef(levels.ravel(), halved.ravel())[0, 1] < -0.97  # inverted
    assert counter.batches == [1, 1]  # the test's own forward; the second answer came from the cache


@pytest.mark.parametrize(("payload", "status", "words"), [
    ({}, 422, "image"),
    ({"image": "not base64!"}, 400, "is not valid base64 picture data"),
    ({"image": base64.b64encode(b"hello").decode()}, 400, "not a PNG, JPEG, WebP, TIFF or BMP file"),
    ({"image": base64.b64encode(EPS).decode()}, 400, "not a PNG, JPEG, WebP, TIFF or BMP file"),
    ({"image": base64.b64encode(png_claiming(30000, 30000)).decode()}, 400, "above the limit of 64 megapixels"),
    ({"image": "{picture}", "width": 16384, "height": 16384}, 400, "16384x16384 pixels was asked for, above the "
                                                                   "limit of 64 megapixels"),
    ({"image": "{picture}", "width": 16384}, 400, "16384x10923 pixels was asked for"),  # in proportion: too tall
    ({"image": "{picture}", "width": 20000}, 422, "width"),
    ({"image": "{picture}", "bits": 12}, 422, "bits"),
    ({"image": "{picture}", "gamma": 9}, 422, "gamma"),
    ({"image": "{picture}", "source": "upload"}, 422, "source"),
    ({"image": "{picture}", "source": "/etc/passwd"}, 422, "source"),
    ({"image": "{picture}", "source": "depth_anything_v2_vits"}, 400, "depth_anything_v2_vits"),
])
def test_bad_input_is_a_4xx_with_words(client, depth_model, payload, status, words):
    payload = {k: _encoded(_picture()) if v == "{picture}" else v for k, v in payload.items()}
    answer = client.post("/depth2img/v1/depth", json=payload)
    assert answer.status_code == status
    assert words in answer.text


def test_a_path_to_a_server_file_is_refused_alike_whether_it_exists_or_not(client, depth_model, tmp_path):
    """The hole this closes: {"image": "/some/server/picture.png"} answered with that file's depth map."""
    path = tmp_path / "secret"
    _picture().save(path, format="PNG")
    answers = []
    for _ in ("the file exists", "it does not"):
        answer = client.post("/depth2img/v1/depth", json={"image": str(path)})
        answers.append((answer.status_code, answer.json()))
        path.unlink(missing_ok=True)
    assert answers[0] == answers[1] and answers[0][0] == 400
    assert "not valid base64 picture data" in answers[0][1]["detail"]
    answer = client.post("/depth2img/v1/depth", json={"image": "/etc/passwd"})
    assert answer.status_code == 400 and "passwd" not in answer.text and "not valid base64" in answer.text


def test_base64_as_people_send_it(client, depth_model):
    buffer = io.BytesIO()
    _picture().save(buffer, format="PNG")
    data = buffer.getvalue()
    for text in (base64.encodebytes(data).decode(), base64.urlsafe_b64encode(data).decode().rstrip("="),
                 "data:image/png;base64," + base64.b64encode(data).decode()):
        answer = client.post("/depth2img/v1/depth", json={"image": text, "width": 48})
        assert answer.status_code == 200, answer.text
        assert _decoded(answer.json()["image"]).size == (48, 32)


@pytest.mark.parametrize("field", ["gamma", "near", "blur", "width"])
@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_json_nan_and_infinity_are_a_422(client, depth_model, field, constant):
    body = f'{{"image": "{_encoded(_picture(32, 32))}", "{field}": {constant}}}'
    answer = client.post("/depth2img/v1/depth", content=body, headers={"content-type": "application/json"})
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"][0]["loc"] == ["body", field]


def test_without_a_depth_checkpoint_it_says_so(client, webui):
    webui.shared.sd_model = FakeSDModel(None)
    try:
        answer = client.post("/depth2img/v1/depth", json={"image": _encoded(_picture())})
    finally:
        webui.shared.sd_model = None
    detail = answer.json()["detail"]
    assert answer.status_code == 400 and "needs a depth checkpoint" in detail
    assert "models/depth2img" not in detail  # a folder nothing reads
    assert "depth_anything_v2_vits.pth" in detail and "in models/depth_anything" in detail


def test_the_docs_say_where_the_weights_go_and_a_file_put_there_is_found(webui, tmp_path):
    """The folders the docs name are those the file lookup reads (they once named models/depth2img)."""
    from fastapi.testclient import TestClient
    from modules import paths_internal
    from tiny_estimators import tiny_rule_state

    from lib_depth2img.webui import extra_estimators, routes

    paths_internal.models_path = str(tmp_path / "models")
    try:
        app = fastapi.FastAPI()
        routes.register_routes(None, app)
        schema = TestClient(app).get("/openapi.json").json()
        words = schema["components"]["schemas"]["Depth2ImgDepthRequest"]["properties"]["source"]["description"]
        assert "models/depth2img" not in words
        folder = Path(words.split("depth_anything_v2_vits.pth")[1].split(" in ", 1)[1].split(";")[0].rstrip("."))
        assert extra_estimators.find_weights("depth_anything_v2_vits") is None
        folder.mkdir(parents=True)
        torch.save(tiny_rule_state("depth_anything_v2_vits"), folder / "depth_anything_v2_vits.pth")
        assert extra_estimators.find_weights("depth_anything_v2_vits") == folder / "depth_anything_v2_vits.pth"
    finally:
        paths_internal.models_path = "models"


def test_docs_list_it_with_the_settings_help(client):
    from lib_depth2img.generation_args import setting_metadata

    schema = client.get("/openapi.json").json()
    assert "/depth2img/v1/depth" in schema["paths"]
    request = schema["components"]["schemas"]["Depth2ImgDepthRequest"]["properties"]
    assert request["gamma"]["description"] == setting_metadata("gamma")["help"]
    assert "Never a file name or path" in request["image"]["description"]
    assert "64 megapixels" in schema["paths"]["/depth2img/v1/depth"]["post"]["description"]
    assert request["gamma"]["maximum"] == 5 and request["gamma"]["default"] == 1.0


def test_the_endpoint_waits_for_the_queue(client, depth_model):
    from modules.call_queue import queue_lock

    order = []
    original = torch.nn.Module.__call__

    def noting(self, *args, **kwargs):
        order.append(queue_lock.locked())
        return original(self, *args, **kwargs)

    torch.nn.Module.__call__ = noting
    try:
        client.post("/depth2img/v1/depth", json={"image": _encoded(_picture(64, 64))})
    finally:
        torch.nn.Module.__call__ = original
    assert order and all(order)
