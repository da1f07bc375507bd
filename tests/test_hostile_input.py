"""The hostile corpus (tests/hostile_corpus.py) through every public entry point, each payload in a process
whose address space is capped (tests/hostile_probe.py): our error or a 4xx for what must be refused, the
tensors torch's own safe loader gives for what is valid, and never another exception, a new import, a
program run or a file touched outside the work folder. Then links planted where outputs are written."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hostile_corpus import AS_REFERENCE, INERT, PATH_STRING, PICTURE, REFUSED, WEIGHTS, build_corpus
from PIL import Image
from reference import synthetic_image

TESTS = Path(__file__).parent
PICTURE_ENTRIES = ("open_picture", "read_depth_map", "endpoint", "img2img_depth_picture", "txt2img_depth_map")
WEIGHTS_ENTRIES = ("read_tensor_index", "read_state_dict", "inspect_checkpoint", "cli_weights")
ENTRIES = (*PICTURE_ENTRIES, "cli_picture", *WEIGHTS_ENTRIES)
CAP_MIB = 1024  # address space a payload may add: every refusal must come before any large allocation
# Too large for HTTP (64 MP) but a person's own file the CLI may read (up to 500 MP): written when it fits in
# memory (an 81 MP 16-bit RGBA picture fits in the cap since grey and RGBA pictures are reduced before RGB), or
# refused with words when it does not; never a fault.
THE_CLIS_OWN = {"png16_rgba_9000", "png16_22000"}


def _state(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.lstat().st_size, p.lstat().st_mtime_ns) for p in folder.rglob("*")}


@pytest.fixture(scope="module")
def probed(tmp_path_factory):
    """Every entry's outcome for every payload, and the folders' state before and after."""
    corpus = tmp_path_factory.mktemp("corpus")
    payloads = build_corpus(corpus)
    work = tmp_path_factory.mktemp("work")
    before = _state(corpus)
    run = subprocess.run([sys.executable, str(TESTS / "hostile_probe.py"), ",".join(ENTRIES), str(corpus), str(work),
                          str(CAP_MIB)], capture_output=True, text=True, timeout=900, cwd=work)
    lines = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    yield {(line["entry"], line["payload"]): line for line in lines}, payloads, run, (before, _state(corpus)), corpus
    for payload in payloads:  # 100 MB and more of them
        payload.path.unlink(missing_ok=True)


def _kinds(entry: str) -> tuple[str, ...]:
    return (WEIGHTS,) if entry in WEIGHTS_ENTRIES else (PICTURE,) if entry == "cli_picture" else (PICTURE, PATH_STRING)


def _read_by_the_reference(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(path) if path.suffix == ".safetensors" else torch.load(path, weights_only=True)


@pytest.mark.parametrize("entry", ENTRIES)
def test_each_payload_is_refused_with_our_error_or_read_as_the_reference_reads_it(probed, entry):
    results, payloads, run, _, _ = probed
    faults = []
    for payload in (p for p in payloads if p.kind in _kinds(entry)):
        result = results.get((entry, payload.name))
        if result is None:
            pytest.fail(f"the probe stopped before {payload.name}: {run.stderr[-2000:]}")
        if result["outcome"] == "fault":
            faults.append(f"{payload.name} ({payload.why}): {result['detail']}")
        elif payload.expect == REFUSED and result["outcome"] != "refused" \
                and not (entry == "cli_picture" and payload.name in THE_CLIS_OWN):
            faults.append(f"{payload.name} ({payload.why}) was accepted: {result['detail']}")
        elif payload.expect == AS_REFERENCE and entry == "read_state_dict":
            expected = {k: v.tolist() for k, v in _read_by_the_reference(payload.path).items()}
            if result["detail"] != expected:
                faults.append(f"{payload.name} ({payload.why}) read as {result['detail']}, not {expected}")
        elif payload.expect == INERT:
            assert result["outcome"] in ("accepted", "refused")
    assert not faults, "\n".join(faults)


@pytest.mark.parametrize("entry", ENTRIES)
def test_no_payload_imports_a_module_or_runs_a_program(probed, entry):
    results, _, _, _, corpus = probed
    imported = {payload: r["new_modules"] for (e, payload), r in results.items() if e == entry and r["new_modules"]}
    assert not imported
    assert not (corpus / "victim-was-run").exists()


def test_no_file_outside_the_work_folder_is_written(probed):
    _, _, run, (before, after), _ = probed
    assert run.returncode == 0, run.stderr[-2000:]
    assert after == before


def test_refusals_of_a_path_string_do_not_tell_whether_the_file_exists(probed):
    results = probed[0]
    for entry in PICTURE_ENTRIES:  # two paths in one folder, alike but for the file being there
        existing, missing = (results[(entry, name)]["detail"] for name in ("path_to_a_picture", "path_missing"))
        assert existing == missing, entry


@pytest.fixture()
def victim(tmp_path) -> Path:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    return victim


def test_links_planted_in_the_output_folder_are_replaced_not_written_through(tmp_path, victim, tiny_estimators,
                                                                             tiny_depth_checkpoint_file, capsys):
    from lib_depth2img import cli

    pictures, out = tmp_path / "pictures", tmp_path / "out"
    pictures.mkdir()
    out.mkdir()
    for name in ("pic", "other"):
        Image.fromarray((synthetic_image(64, 96) * 255).astype("uint8")).save(pictures / f"{name}.png")
    (out / ".pic-depth.png.partial").symlink_to(victim)  # where the map used to be written first
    (out / "other-depth.png").symlink_to(victim)  # the map's own name
    code = cli.main(["depth", str(pictures), "--weights", str(tiny_depth_checkpoint_file), "-o", str(out),
                     "--overwrite"])
    assert code == 0, capsys.readouterr().err
    assert victim.read_text() == "precious"
    for name in ("pic", "other"):
        written = out / f"{name}-depth.png"
        assert not written.is_symlink() and Image.open(written).size == (96, 64)
    assert sorted(p.name for p in out.iterdir()) == [".pic-depth.png.partial", "other-depth.png", "pic-depth.png"]


def test_an_output_replaces_a_link_at_its_name_and_an_interrupted_one_leaves_nothing(tmp_path, victim):
    from lib_depth2img.output_files import replacing_file

    target = tmp_path / "out.safetensors"
    target.symlink_to(victim)
    with replacing_file(target) as file:
        file.write(b"new")
    assert victim.read_text() == "precious" and not target.is_symlink() and target.read_bytes() == b"new"
    with pytest.raises(KeyboardInterrupt), replacing_file(target) as file:
        file.write(b"half")
        raise KeyboardInterrupt
    assert target.read_bytes() == b"new" and sorted(os.listdir(tmp_path)) == ["out.safetensors", "victim.txt"]
