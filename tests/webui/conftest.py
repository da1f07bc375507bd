"""Opt-in: a real WebUI v1.10.1 with this extension installed, on CPU (see webui_server.py).

Set DEPTH2IMG_WEBUI_DIR to the WebUI folder; its ``venv`` (or DEPTH2IMG_WEBUI_PYTHON) must have the
WebUI's requirements and ``requests``. Without it these tests are skipped, saying why.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from webui_server import running_webui  # noqa: E402

WEBUI_DIR = os.environ.get("DEPTH2IMG_WEBUI_DIR")


def pytest_collection_modifyitems(config, items):
    skip = pytest.mark.skip(reason="real-WebUI test: set DEPTH2IMG_WEBUI_DIR to a WebUI v1.10.1 folder to run it")
    for item in items:
        if "tests/webui/" in item.nodeid.replace(os.sep, "/") and not WEBUI_DIR:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def webui(tmp_path_factory):
    pytest.importorskip("requests", reason="the real-WebUI tests talk to it over HTTP with requests")
    data_dir = tmp_path_factory.mktemp("webui-data")
    with running_webui(WEBUI_DIR, data_dir) as instance:
        yield instance
    sys.stdout.write(f"\nWebUI log: {instance.log}\n")
