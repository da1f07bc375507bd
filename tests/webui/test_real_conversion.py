"""Opt-in: converted checkpoints load strictly into ldm's own depth model, and each network computes what
diffusers' / transformers' counterpart computes from the converted-back folder (WebUI venv + diffusers)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from webui_server import webui_python

WEBUI_DIR = os.environ.get("DEPTH2IMG_WEBUI_DIR")  # not from conftest: two suites' conftest modules share that name

ERRORS = ("unet", "vae_encode", "vae_decode", "text_encoder", "depth_estimator")


@pytest.fixture(scope="module")
def crosscheck(tmp_path_factory) -> dict:
    python = webui_python(WEBUI_DIR)
    if subprocess.run([python, "-c", "import diffusers"], capture_output=True).returncode:
        pytest.skip(f"diffusers is not installed in {python}: pip install --no-deps diffusers==0.31.0 there")
    work = tmp_path_factory.mktemp("crosscheck")
    run = subprocess.run([python, str(Path(__file__).with_name("conversion_crosscheck.py")), WEBUI_DIR, str(work)],
                         capture_output=True, text=True, timeout=1800)
    shutil.rmtree(work)  # about 16 GB of float32 weights
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


def test_ldm_loads_the_converted_checkpoint_strictly_with_its_own_schedule(crosscheck):
    assert crosscheck["strict_load"]
    assert crosscheck["schedule_error"] < 1e-6


@pytest.mark.parametrize("network", ERRORS)
def test_each_network_matches_its_diffusers_counterpart(crosscheck, network):
    print(f"\n{network}: max relative difference {crosscheck[network]:.2e}")
    assert crosscheck[network] < 1e-4
