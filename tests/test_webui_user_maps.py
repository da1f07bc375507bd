"""user_maps.py and batch_names.py against the WebUI imitation: depth maps people upload, one or a folder."""


import cv2
import pytest
import torch
import torch.nn.functional as F
from reference import conditioning_by_the_rule
from webui_helpers import _img2img, _map_png, _picture, _script


def test_uploaded_map_conditions_without_any_forward(webui, depth_model, tmp_path):
    import base64

    _, counter = depth_model
    path = _map_png(tmp_path)
    encoded = base64.b64encode(path.read_bytes()).decode()
    p, _ = _img2img(webui, [_picture()], script_args=[{"depth_source": "upload", "depth_map": encoded, "gamma": 2}])
    levels = torch.from_numpy(cv2.imread(str(path), cv2.IMREAD_UNCHANGED) / 65535).float()[None, None]
    stretched = F.interpolate(levels, size=(128, 192), mode="bilinear", align_corners=False)  # "Just resize"
    gamma = ((stretched - stretched.min()) / (stretched.max() - stretched.min())) ** 2  # on the map scaled to [0, 1]
    expected = conditioning_by_the_rule(gamma, (16, 24))
    assert counter.batches == [] and torch.allclose(p.sampled_with[0], expected, atol=1e-5)
    assert p.extra_generation_params["Depth2img source"] == "upload"
    assert p.extra_generation_params["Depth2img gamma"] == 2.0
    assert not any(key.split()[-1] == "map" for key in p.extra_generation_params)  # the map itself is not infotext


def test_upload_without_a_map_is_a_clear_error(webui, depth_model):
    from lib_depth2img import Depth2ImgError

    p = webui.processing.StableDiffusionProcessingImg2Img([_picture()], 192, 128,
                                                          script_args=[{"depth_source": "upload"}])
    with pytest.raises(Depth2ImgError, match="no depth map was given"):
        webui.processing.process_images(p, [_script(webui)])


def test_batch_folder_maps_matched_by_file_name(webui, depth_model, tmp_path):
    from lib_depth2img import Depth2ImgError

    maps = tmp_path / "maps"
    maps.mkdir()
    _map_png(maps, "street.png"), _map_png(maps, "house.tif", flip=True)
    street, house = _picture(), _picture(flip=True)
    street.filename, house.filename = str(tmp_path / "street.jpg"), str(tmp_path / "house.webp")
    settings = {"depth_source": "upload", "depth_map_folder": str(maps)}
    p, _ = _img2img(webui, [street, house], script_args=[settings])
    assert torch.allclose(p.sampled_with[0][0], p.sampled_with[0][1].flip(-1), atol=1e-5)  # each its own map
    stranger = _picture()
    stranger.filename = str(tmp_path / "stranger.png")
    p = webui.processing.StableDiffusionProcessingImg2Img([stranger], 192, 128, script_args=[settings])
    with pytest.raises(Depth2ImgError, match="No depth map named stranger"):
        webui.processing.process_images(p, [_script(webui)])


def test_batch_tab_pictures_find_their_maps_although_the_tab_drops_file_names(webui, depth_model, tmp_path):
    from modules import img2img

    inputs, maps = tmp_path / "inputs", tmp_path / "maps"
    inputs.mkdir(), maps.mkdir()
    _picture().save(inputs / "street.png")
    _picture(flip=True).save(inputs / "house.png")
    _map_png(maps, "street.png"), _map_png(maps, "house.tiff", flip=True)
    assert img2img.process_batch.depth2img_tracking  # installed when the script loaded
    p = webui.processing.StableDiffusionProcessingImg2Img([], 192, 128, script_args=[
        {"depth_source": "upload", "depth_map_folder": str(maps)}])
    house, street = img2img.process_batch(p, str(inputs), "", "", [_script(webui)])  # sorted: house, street
    assert torch.allclose(street, house.flip(-1), atol=1e-5) and not torch.allclose(street, house)
    from lib_depth2img.webui import batch_names

    assert batch_names.source_name(_picture()) is None  # outside a Batch tab run: no guessing


def test_a_path_as_the_api_depth_map_is_never_read(webui, depth_model, tmp_path):
    from lib_depth2img import Depth2ImgError

    path = _map_png(tmp_path)
    p = webui.processing.StableDiffusionProcessingImg2Img([_picture()], 192, 128, script_args=[
        {"depth_source": "upload", "depth_map": str(path)}])
    with pytest.raises(Depth2ImgError, match="not valid base64 picture data"):
        webui.processing.process_images(p, [_script(webui)])


@pytest.mark.parametrize("source", ["upload", "checkpoint"])
def test_a_depth_folder_is_not_looked_at_for_pictures_without_file_names(webui, depth_model, tmp_path, source):
    """Pictures sent to the API have no file name, so the folder is never listed and whether it exists does not
    change the answer: the API cannot be used to learn which folders the server has."""
    from lib_depth2img import Depth2ImgError

    outcomes = []
    for folder in (tmp_path, tmp_path / "no such folder"):
        p = webui.processing.StableDiffusionProcessingImg2Img([_picture()], 192, 128, script_args=[
            {"depth_source": source, "depth_map_folder": str(folder)}])
        try:
            webui.processing.process_images(p, [_script(webui)])
            outcomes.append(p.extra_generation_params["Depth2img depth"])
        except Depth2ImgError as error:
            outcomes.append(str(error))
    assert outcomes[0] == outcomes[1]
    assert outcomes[0] == ("init picture" if source == "checkpoint" else
                           "Depth maps from a folder are matched by the pictures' file names, and this picture has "
                           "none: use the img2img Batch tab, or upload one depth map.")
