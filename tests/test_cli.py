"""The depth command end to end, in a subprocess, as a user runs it."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from crafted_pictures import EPS, png_claiming
from PIL import Image
from reference import depth_by_the_rule, rule_weights, synthetic_image

ROOT = Path(__file__).parent.parent


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lib_depth2img", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)


def _picture(path: Path, height: int, width: int, flip: bool = False) -> Path:
    pixels = (synthetic_image(height, width) * 255).round().astype(np.uint8)
    Image.fromarray(pixels[:, ::-1] if flip else pixels).save(path)
    return path


def test_depth_maps_for_several_pictures(tmp_path, midas_pt):
    first = _picture(tmp_path / "street.png", 96, 160)
    second = _picture(tmp_path / "portrait.jpg", 160, 96, flip=True)
    out = tmp_path / "out"
    result = _run("depth", first, second, "--weights", midas_pt, "-o", out)
    assert result.returncode == 0, result.stderr
    maps = [out / "street-depth.png", out / "portrait-depth.png"]
    assert result.stdout.split() == [str(p) for p in maps]
    assert "2/2" in result.stderr  # the progress bar
    for path, size in zip(maps, [(160, 96), (96, 160)], strict=True):
        with Image.open(path) as image:
            assert image.mode == "L" and image.size == size
            assert np.asarray(image).std() > 0


def test_sixteen_bit_beside_the_picture_from_a_whole_checkpoint(tmp_path, hybrid_rule_state):
    weights = tmp_path / "512-depth-ema.ckpt"
    state = {f"depth_model.model.{k}": v for k, v in hybrid_rule_state.items()}
    state["model.diffusion_model.input_blocks.0.0.weight"] = torch.zeros(320, 5, 3, 3)
    torch.save({"state_dict": state}, weights)
    picture = _picture(tmp_path / "room.png", 64, 64)
    result = _run("depth", picture, "--weights", weights, "--bits", "16")
    assert result.returncode == 0, result.stderr
    with Image.open(tmp_path / "room-depth.png") as image:
        assert image.mode.startswith("I") and image.size == (64, 64)


def test_missing_weights_says_where_they_live(tmp_path):
    picture = _picture(tmp_path / "a.png", 32, 32)
    result = _run("depth", picture, "--weights", tmp_path / "dpt_hybrid-midas-501f0c75.pt")
    assert result.returncode == 2
    assert "dpt_hybrid-midas-501f0c75.pt" in result.stderr and "models/midas" in result.stderr
    assert "Traceback" not in result.stderr


def test_wrong_weights_file_says_what_was_expected(tmp_path):
    picture = _picture(tmp_path / "a.png", 32, 32)
    wrong = tmp_path / "vae.pt"
    torch.save({"encoder.conv_in.weight": torch.zeros(4)}, wrong)
    result = _run("depth", picture, "--weights", wrong)
    assert result.returncode == 2
    assert "vae.pt" in result.stderr and "dpt_hybrid-midas-501f0c75.pt" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.fixture(scope="module")
def small_weights(tmp_path_factory) -> Path:
    """MiDaS v2.1 small, saved the way its release was: ``torch.save(module.state_dict())``."""
    from lib_depth2img.estimators import create_estimator

    module = create_estimator("midas_v21_small")
    state = rule_weights({k: tuple(v.shape) for k, v in module.state_dict().items()})
    for key in [k for k in state if k.endswith("running_var")]:
        state[key] = state[key].abs() + 0.5
    module.load_state_dict(state)
    path = tmp_path_factory.mktemp("small") / "midas_v21_small-70d6b9c8.pt"
    torch.save(module.state_dict(), path)
    return path


def _map(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image, dtype=np.float64) / (65535 if image.mode.startswith("I") else 255)


def test_a_folder_of_photos_with_shared_names_and_earlier_maps(tmp_path, small_weights):
    photos = tmp_path / "photos"
    photos.mkdir()
    _picture(photos / "pic.png", 48, 64)
    _picture(photos / "pic.jpg", 48, 64, flip=True)
    _picture(photos / "other.png", 64, 48)
    _picture(photos / "old-depth.png", 32, 32)  # a map from an earlier run: never an input
    (photos / "notes.txt").write_text("not a picture")
    result = _run("depth", photos, "--weights", small_weights, "--bits", "16")
    assert result.returncode == 0, result.stderr
    written = [photos / "other-depth.png", photos / "pic_jpg-depth.png", photos / "pic_png-depth.png"]
    assert sorted(result.stdout.split()) == [str(p) for p in written]  # each path as it is written
    assert not (photos / "old-depth-depth.png").exists() and not (photos / "pic-depth.png").exists()
    assert not np.array_equal(_map(written[1]), _map(written[2]))  # two pictures, two maps
    stamps = {p: p.stat().st_mtime_ns for p in written}
    again = _run("depth", photos, "--weights", small_weights)
    assert again.returncode == 0 and again.stdout == "" and again.stderr.count("already exists (--overwrite") == 3
    assert again.stderr.splitlines()[-1] == "0 written, 3 skipped, 0 failed"
    assert {p: p.stat().st_mtime_ns for p in written} == stamps  # nothing overwritten
    forced = _run("depth", photos, "--weights", small_weights, "--overwrite")
    assert forced.returncode == 0 and len(forced.stdout.split()) == 3
    assert all(p.stat().st_mtime_ns != stamps[p] for p in written)


def _maps_of_unique_copies(tmp_path, weights, pictures: list[Path]) -> list[np.ndarray]:
    """Each picture's map from a run where every name is distinct: what the shared-name run must match."""
    solo = tmp_path / "solo"
    solo.mkdir()
    copies = [solo / f"picture{number}{p.suffix}" for number, p in enumerate(pictures)]
    for picture, copy in zip(pictures, copies, strict=True):
        copy.write_bytes(picture.read_bytes())
    result = _run("depth", solo, "--weights", weights, "--bits", "16")
    assert result.returncode == 0, result.stderr
    return [_map(solo / f"{copy.stem}-depth.png") for copy in copies]


def test_the_same_name_in_two_folders_gives_two_maps(tmp_path, small_weights):
    """`depth day1/ day2/ -o maps/` with an x.jpg in each once wrote maps/x_jpg-depth.png twice."""
    days = [tmp_path / "day1", tmp_path / "day2"]
    for day in days:
        day.mkdir()
    pictures = [_picture(days[0] / "x.jpg", 48, 64), _picture(days[1] / "x.jpg", 48, 64, flip=True)]
    out = tmp_path / "maps"
    result = _run("depth", *days, "--weights", small_weights, "-o", out, "--bits", "16")
    assert result.returncode == 0, result.stderr
    written = [out / "x_day1-depth.png", out / "x_day2-depth.png"]
    assert sorted(result.stdout.split()) == [str(p) for p in written]
    assert sorted(p.name for p in out.iterdir()) == [p.name for p in written]
    assert f"{pictures[1]} gets x_day2-depth.png" in result.stderr
    expected = _maps_of_unique_copies(tmp_path, small_weights, pictures)
    assert not np.array_equal(expected[0], expected[1])
    for path, map_alone in zip(written, expected, strict=True):
        assert np.array_equal(_map(path), map_alone)
    again = _run("depth", *days, "--weights", small_weights, "-o", out)
    assert again.returncode == 0 and again.stdout == "" and again.stderr.count("already exists (--overwrite") == 2


def test_suffixes_that_differ_only_in_case_give_two_maps(tmp_path, small_weights):
    """Cameras restart IMG_0001.JPG every day; on macOS and Windows IMG_0001_JPG and IMG_0001_jpg are one file."""
    photos = tmp_path / "photos"
    photos.mkdir()
    pictures = [_picture(photos / "IMG_0001.JPG", 48, 64), _picture(photos / "IMG_0001.jpg", 48, 64, flip=True)]
    result = _run("depth", photos, "--weights", small_weights, "--bits", "16")
    assert result.returncode == 0, result.stderr
    written = [photos / "IMG_0001-depth.png", photos / "IMG_0001_2-depth.png"]  # in the order the names sort
    assert result.stdout.split() == [str(p) for p in written]
    expected = _maps_of_unique_copies(tmp_path, small_weights, pictures)
    assert not np.array_equal(expected[0], expected[1])
    for path, map_alone in zip(written, expected, strict=True):
        assert np.array_equal(_map(path), map_alone)


def test_a_bad_picture_is_reported_and_the_rest_written(tmp_path, small_weights):
    first, last = _picture(tmp_path / "a.png", 40, 40), _picture(tmp_path / "c.png", 40, 40)
    broken = tmp_path / "b.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    result = _run("depth", first, broken, last, tmp_path / "missing.png", "--weights", small_weights)
    assert result.returncode == 1
    assert "b.png" in result.stderr and "missing.png does not exist" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout.split() == [str(tmp_path / "a-depth.png"), str(tmp_path / "c-depth.png")]
    assert result.stderr.splitlines()[-1] == "2 written, 0 skipped, 2 failed"


def test_nothing_to_work_on_is_exit_2_before_the_model_loads(tmp_path, small_weights):
    """A missing picture or an empty folder once exited 1, "some failed", though nothing was done."""
    (tmp_path / "empty").mkdir()
    for inputs in ([tmp_path / "missing.jpg"], [tmp_path / "empty"], [tmp_path / "missing.jpg", tmp_path / "empty"]):
        result = _run("depth", *inputs, "--weights", small_weights)
        assert result.returncode == 2, result.stderr
        assert "midas_v21_small on cpu" not in result.stderr  # the model was never loaded
        assert result.stderr.splitlines()[-2:] == [f"0 written, 0 skipped, {len(inputs)} failed",
                                                   "error: nothing was done: no picture gave a depth map (see above)."]
    assert "missing.jpg does not exist" in result.stderr and "empty holds no pictures" in result.stderr
    old = _picture(tmp_path / "old.png", 32, 32)
    _picture(tmp_path / "old-depth.png", 32, 32)  # its map, from an earlier run: that picture is done
    result = _run("depth", old, tmp_path / "missing.jpg", "--weights", small_weights)
    assert result.returncode == 1 and result.stderr.splitlines()[-1] == "0 written, 1 skipped, 1 failed"


def test_an_output_folder_under_a_file_is_said_once_before_the_model_loads(tmp_path, small_weights):
    pictures = [_picture(tmp_path / f"{name}.png", 32, 32) for name in "abc"]
    (tmp_path / "a").write_text("a file where a folder was meant")
    result = _run("depth", *pictures, "--weights", small_weights, "-o", tmp_path / "a" / "maps")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [f"error: -o {tmp_path / 'a' / 'maps'} cannot be made: {tmp_path / 'a'} "
                                          "is a file; name a folder for the depth maps."]
    assert result.stdout == "" and not list(tmp_path.glob("*-depth.png"))


def test_an_interruption_leaves_the_bar_at_the_maps_written_and_draws_nothing_after(tmp_path, small_weights):
    """The bar once counted a picture as it started (5/5 shown long before the last map) and was drawn again after
    "interrupted"."""
    import re
    import signal

    for number in range(40):
        _picture(tmp_path / f"p{number:02}.png", 256, 384, flip=number % 2 == 1)
    process = subprocess.Popen([sys.executable, "-m", "lib_depth2img", "depth", str(tmp_path), "--weights",
                                str(small_weights)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    first = process.stdout.readline()  # one map written: the run is under way
    process.send_signal(signal.SIGINT)
    rest, errors = process.communicate(timeout=300)
    written = [line for line in (first + rest).split() if line]
    assert process.returncode == 130 and 1 <= len(written) < 40, errors
    assert all(Path(path).is_file() for path in written)
    before, interrupted, after = errors.rpartition("interrupted: ")
    assert interrupted and "\n" not in after.rstrip("\n") and "depth:" not in after  # the last words, the bar gone
    counts = re.findall(r"(\d+)/40", before)
    maps = list(tmp_path.glob("*-depth.png"))
    assert int(counts[-1]) == len(maps)  # the bar's last state: the maps written, not the pictures begun


def test_planted_links_in_the_output_folder_are_never_written_through(tmp_path, small_weights):
    """`ln -s ~/victim OUT/.pic-depth.png.partial` once made the victim hold the PNG; so would a link at the map's
    own name, with --overwrite."""
    picture = _picture(tmp_path / "pic.png", 40, 40)
    victims = [tmp_path / "victim", tmp_path / "other victim"]
    for victim in victims:
        victim.write_text("precious")
    out = tmp_path / "out"
    out.mkdir()
    (out / ".pic-depth.png.partial").symlink_to(victims[0])
    (out / "pic-depth.png").symlink_to(victims[1])
    result = _run("depth", picture, "--weights", small_weights, "-o", out, "--overwrite")
    assert result.returncode == 0, result.stderr
    assert [victim.read_text() for victim in victims] == ["precious", "precious"]
    assert not (out / "pic-depth.png").is_symlink() and _map(out / "pic-depth.png").shape == (40, 40)
    assert sorted(p.name for p in out.iterdir()) == [".pic-depth.png.partial", "pic-depth.png"]


def test_other_formats_and_bombs_are_reported_not_decoded(tmp_path, small_weights):
    (tmp_path / "drawing.png").write_bytes(EPS)  # an EPS renamed: Pillow would have run Ghostscript on it
    (tmp_path / "bomb.png").write_bytes(png_claiming(30000, 30000))  # 900 MP: above even the CLI's own limit
    good = _picture(tmp_path / "good.png", 40, 40)
    result = _run("depth", tmp_path / "drawing.png", tmp_path / "bomb.png", good, "--weights", small_weights)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "drawing.png is not a PNG, JPEG, WebP, TIFF or BMP picture" in result.stderr
    assert "bomb.png is 30000x30000 pixels, above the limit of 500 megapixels" in result.stderr
    assert result.stdout.split() == [str(tmp_path / "good-depth.png")]


def test_exif_orientation_gives_an_upright_map(tmp_path, small_weights):
    pixels = (synthetic_image(48, 80) * 255).round().astype(np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6  # a phone held upright: the pixels are stored sideways, to be turned 90 degrees clockwise
    Image.fromarray(pixels).save(tmp_path / "phone.png", exif=exif)
    Image.fromarray(np.ascontiguousarray(np.rot90(pixels, k=-1))).save(tmp_path / "upright.png")
    result = _run("depth", tmp_path / "phone.png", tmp_path / "upright.png", "--weights", small_weights,
                  "--bits", "16")
    assert result.returncode == 0, result.stderr
    phone, upright = _map(tmp_path / "phone-depth.png"), _map(tmp_path / "upright-depth.png")
    assert phone.shape == (80, 48) and np.array_equal(phone, upright)


def test_sixteen_bit_grayscale_is_read_not_clipped_to_white(tmp_path, small_weights):
    """The map equals the depth of the file's own 65536 levels, each level / 65535 on all three channels."""
    from lib_depth2img.estimators import create_estimator

    gray = (synthetic_image(48, 64)[..., 0] * 0.6 + synthetic_image(48, 64)[..., 2] * 0.4)
    levels = np.round(gray * 65535).astype(np.uint16)
    Image.fromarray(levels).save(tmp_path / "scan16.png")
    assert Image.open(tmp_path / "scan16.png").mode.startswith("I;16")
    result = _run("depth", tmp_path / "scan16.png", "--weights", small_weights, "--bits", "16")
    assert result.returncode == 0, result.stderr
    module = create_estimator("midas_v21_small")
    module.load_state_dict(torch.load(small_weights))
    pixels = torch.from_numpy(levels.astype(np.float32) / 65535)[None, None].expand(1, 3, -1, -1)
    # MiDaS v2.1 small's rule: fit inside 256x256 (x4), ImageNet's mean and std; then back to the picture's size
    depth = depth_by_the_rule(module, pixels, (192, 256), (0.485, 0.456, 0.406), (0.229, 0.224, 0.225),
                              output_size=(48, 64))[0, 0].double().numpy()
    expected = (depth - depth.min()) / (depth.max() - depth.min())
    got = _map(tmp_path / "scan16-depth.png")
    assert got.std() > 0.1 and np.abs(got - expected).max() < 2e-3


def test_output_folder_that_is_a_file_and_a_mismatched_estimator(tmp_path, small_weights):
    picture = _picture(tmp_path / "a.png", 32, 32)
    (tmp_path / "maps").write_text("a file")
    result = _run("depth", picture, "--weights", small_weights, "-o", tmp_path / "maps")
    assert result.returncode == 2 and "is a file" in result.stderr and "Traceback" not in result.stderr
    result = _run("depth", picture, "--weights", small_weights, "--estimator", "dpt_large")
    assert result.returncode == 2 and "holds midas_v21_small weights, not dpt_large" in result.stderr


def test_a_panorama_beyond_pillows_bomb_guard(tmp_path, small_weights, monkeypatch):
    """182 MP: Pillow refuses it by default (DecompressionBombError); it is the person's own photo."""
    row = np.linspace(0, 255, 13500).astype(np.uint8)
    Image.fromarray(np.broadcast_to(row, (13500, 13500))).save(tmp_path / "panorama.png", compress_level=1)
    result = _run("depth", tmp_path / "panorama.png", "--weights", small_weights)
    assert result.returncode == 0, result.stderr
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)  # the test's own look at the map
    with Image.open(tmp_path / "panorama-depth.png") as written:
        assert written.size == (13500, 13500)


def test_help_shows_defaults_and_an_example():
    result = _run("depth", "--help")
    assert result.returncode == 0
    assert "(default: auto)" in result.stdout and "examples:" in result.stdout and "--overwrite" in result.stdout


def test_help_and_version_answer_without_importing_torch():
    """`depth2img --help` once imported torch first (3-18 s)."""
    import tomllib

    script = """if True:
        import contextlib, io, sys
        from lib_depth2img import cli
        for argv in (["--help"], ["depth", "--help"], ["convert", "--help"], ["--version"]):
            with contextlib.redirect_stdout(io.StringIO()) as said, contextlib.suppress(SystemExit):
                cli.main(argv)
            print(repr(said.getvalue()))
        print("torch" in sys.modules)
    """
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    *helps, version, torch_imported = result.stdout.splitlines()
    assert torch_imported == "False"
    assert all("usage:" in text for text in helps) and "dpt_hybrid (MiDaS DPT-Hybrid, MIT)" in helps[1]
    with open(ROOT / "pyproject.toml", "rb") as file:
        expected = tomllib.load(file)["project"]["version"]
    assert version == repr(f"python -m lib_depth2img {expected}\n")
    assert "--to {checkpoint,diffusers}" in helps[2] and "diffusers: back" in helps[2]


def test_version_from_the_command(tmp_path):
    import tomllib

    with open(ROOT / "pyproject.toml", "rb") as file:
        expected = tomllib.load(file)["project"]["version"]
    result = _run("--version")
    assert result.returncode == 0 and result.stdout == f"python -m lib_depth2img {expected}\n"


def test_convert_from_a_missing_folder_says_it_does_not_exist(tmp_path):
    for args in ([tmp_path / "no-such-folder", tmp_path / "out.safetensors"],
                 [tmp_path / "no-such.safetensors", tmp_path / "out", "--to", "diffusers"]):
        result = _run("convert", *args)
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert result.stderr == f"error: {args[0]} does not exist.\n"
        assert not args[1].exists()


def test_the_device_defaults_to_the_best_one(monkeypatch):
    from lib_depth2img import cli_depth

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert cli_depth.best_device().type == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert cli_depth.best_device().type in ("cpu", "mps")


def test_pip_install_gives_a_command_that_works_from_any_folder(tmp_path):
    import shutil

    source, target = tmp_path / "checkout", tmp_path / "site"  # a copy: a build writes into the tree it builds
    shutil.copytree(ROOT / "lib_depth2img", source / "lib_depth2img", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", source)
    install = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                              "--target", str(target), str(source)], capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, install.stderr
    result = subprocess.run([str(target / "bin" / "depth2img"), "depth", "--help"], cwd=tmp_path,
                            env={**os.environ, "PYTHONPATH": str(target)}, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0 and result.stdout.startswith("usage: depth2img depth"), result.stderr
    assert (target / "lib_depth2img" / "conversion" / "dpt_hybrid_config.json").is_file()


# Throughput on a folder: pictures read ahead in a background thread, pictures of one shape batched.

class Watched(torch.nn.Module):
    """The estimator the CLI loads, keeping the number of pictures of each forward and calling ``check(x)``
    first, which may raise as a device out of memory or a Ctrl-C would."""

    def __init__(self, estimator, check):
        super().__init__()
        self.estimator, self.check, self.input_spec, self.batches = estimator, check, estimator.input_spec, []

    def forward(self, x):
        self.batches.append(x.shape[0])
        self.check(x)
        return self.estimator(x)


def _watch(monkeypatch, check=lambda x: None) -> list[Watched]:
    """Each estimator the CLI loads in this process, watched."""
    from lib_depth2img import cli_depth

    load, loaded = cli_depth.load_estimator_from_file, []

    def load_watched(*args, **kwargs):
        loaded.append(Watched(load(*args, **kwargs), check))
        return loaded[-1]

    monkeypatch.setattr(cli_depth, "load_estimator_from_file", load_watched)
    return loaded


def _run_here(capsys, *args) -> tuple[int, str, str]:
    """The CLI in this process, where its estimator can be watched: (exit status, stdout, stderr)."""
    from lib_depth2img import cli

    status = cli.main([str(arg) for arg in args])
    said = capsys.readouterr()
    return status, said.out, said.err


def _read_ahead_threads() -> list:
    import threading

    return [thread for thread in threading.enumerate() if thread.name == "depth2img-read-ahead"]


def _mixed_folder(folder: Path) -> tuple[list[Path], list[Path]]:
    """Pictures of two input shapes for MiDaS v2.1 small, their names interleaved: those that become 192x256
    (48x64, 96x128, 30x40) and those that become 256x192 (64x48)."""
    folder.mkdir()
    wide = [_picture(folder / "p0.png", 48, 64), _picture(folder / "p2.png", 48, 64, flip=True),
            _picture(folder / "p3.jpg", 96, 128), _picture(folder / "p5.png", 30, 40, flip=True),
            _picture(folder / "p6.png", 48, 64)]
    tall = [_picture(folder / "p1.png", 64, 48), _picture(folder / "p4.png", 64, 48, flip=True),
            _picture(folder / "p7.png", 64, 48)]
    return wide, tall


def test_pictures_of_one_shape_share_a_forward_and_get_the_maps_made_one_at_a_time(tmp_path, small_weights,
                                                                                   monkeypatch, capsys):
    wide, tall = _mixed_folder(tmp_path / "photos")
    loaded = _watch(monkeypatch)
    runs = {}
    for name, options in (("batched", []), ("alone", ["--batch-size", "1", "--no-read-ahead"])):
        status, out, err = _run_here(capsys, "depth", tmp_path / "photos", "--weights", small_weights, "--bits",
                                     "16", "-o", tmp_path / name, *options)
        assert status == 0, err
        # written shape by shape, in the order the shapes first come; each in its name's order
        assert out.split() == [str(tmp_path / name / f"{p.stem}-depth.png") for p in wide + tall]
        assert err.splitlines()[-1] == "8 written, 0 skipped, 0 failed"
        runs[name] = {p.stem: _map(tmp_path / name / f"{p.stem}-depth.png") for p in wide + tall}
    assert [watched.batches for watched in loaded] == [[4, 1, 3], [1] * 8]
    assert not _read_ahead_threads()
    for stem, alone in runs["alone"].items():
        batched = runs["batched"][stem]
        assert batched.min() == 0 and batched.max() == 1  # each map stretched over its own levels
        # float rounding of another batch shape: measured 1 level of 65535 at most
        assert batched.shape == alone.shape and np.abs(batched - alone).max() <= 2 / 65535, stem
    assert not np.array_equal(runs["alone"]["p0"], runs["alone"]["p2"])


def test_a_picture_that_fails_to_decode_in_the_middle_of_a_batch(tmp_path, small_weights):
    pictures = [_picture(tmp_path / f"{name}.jpg", 480, 640, flip=name in "bd") for name in "abcde"]
    whole = pictures[2].read_bytes()
    pictures[2].write_bytes(whole[:len(whole) // 2])  # its header is whole: it is found broken only as it is read
    result = _run("depth", tmp_path, "--weights", small_weights, "--batch-size", "4")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stdout.split() == [str(tmp_path / f"{name}-depth.png") for name in "abde"]
    assert f"error: {pictures[2]}: Cannot read the picture {pictures[2]} as a JPEG picture" in result.stderr
    assert result.stderr.splitlines()[-1] == "4 written, 0 skipped, 1 failed"


def test_a_batch_out_of_memory_falls_back_to_one_at_a_time(tmp_path, small_weights, monkeypatch, capsys):
    """A device that fits one picture at a time (MemoryError for more), and a white picture too big even alone."""
    photos = tmp_path / "photos"
    photos.mkdir()
    for number in range(5):
        _picture(photos / f"p{number}.png", 48, 64, flip=number % 2 == 1)
    Image.new("RGB", (64, 48), "white").save(photos / "p2white.png")  # in the first batch

    def fits_one(x):
        # white, after ImageNet's mean and std, averages 2.44; these pictures about 0.2
        if x.shape[0] > 1 or bool((x.mean(dim=(1, 2, 3)) > 2).any()):
            raise MemoryError

    loaded = _watch(monkeypatch, fits_one)
    status, out, err = _run_here(capsys, "depth", photos, "--weights", small_weights, "--bits", "16")
    assert status == 1 and "Traceback" not in err
    written = [photos / f"{name}-depth.png" for name in ("p0", "p1", "p2", "p3", "p4")]
    assert out.split() == [str(p) for p in written]
    assert f"error: {photos / 'p2white.png'}: Not enough memory for the depth estimator even for one picture" in err
    assert err.splitlines()[-1] == "5 written, 0 skipped, 1 failed"
    # p0 p1 p2 p2white: halved until it fits (depth.py), until the white one fails alone; then each alone, so that
    # it fails alone; p3 p4: halved
    assert loaded[0].batches == [4, 2, 1, 1, 2, 1, 1] + [1, 1, 1, 1] + [2, 1, 1]
    maps = {p: _map(p) for p in written}
    alone = tmp_path / "alone"
    status, _, _ = _run_here(capsys, "depth", photos, "--weights", small_weights, "--bits", "16", "-o", alone,
                             "--batch-size", "1")
    assert status == 1 and loaded[1].batches == [1] * 6
    for path, batched in maps.items():
        assert np.array_equal(batched, _map(alone / path.name))  # run alone either way: the same kernels


def test_an_interruption_while_the_thread_reads_ahead_leaves_no_thread(tmp_path, small_weights, monkeypatch,
                                                                       capsys):
    import re

    for number in range(12):
        _picture(tmp_path / f"p{number:02}.png", 48, 64, flip=number % 2 == 1)
    seen_reading = []

    def interrupt_the_second(x):
        if len(loaded[0].batches) == 2:
            seen_reading.append(bool(_read_ahead_threads()))
            raise KeyboardInterrupt  # as Ctrl-C arrives in the main thread during a forward

    loaded = _watch(monkeypatch, interrupt_the_second)
    status, out, err = _run_here(capsys, "depth", tmp_path, "--weights", small_weights)
    assert status == 130 and seen_reading == [True]
    assert not _read_ahead_threads()
    assert out.split() == [str(tmp_path / f"p{number:02}-depth.png") for number in range(4)]
    assert sorted(tmp_path.glob("*-depth.png")) == [Path(p) for p in out.split()]
    before, interrupted, after = err.rpartition("interrupted: ")
    assert interrupted and "depth:" not in after and re.findall(r"(\d+)/12", before)[-1] == "4"


def test_a_batch_size_below_one_is_refused(tmp_path, capsys):
    from lib_depth2img import cli

    for size in ("0", "-2", "two"):
        with pytest.raises(SystemExit) as exited:
            cli.main(["depth", str(tmp_path), "--weights", str(tmp_path / "w.pt"), "--batch-size", size])
        assert exited.value.code == 2
        assert f"--batch-size: '{size}' is not a whole number of pictures, 1 or more" in capsys.readouterr().err
