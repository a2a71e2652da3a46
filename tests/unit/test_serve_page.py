"""The upload page in a real browser: a person picks a photo and sees labelled boxes.

Chromium (Debian's ``chromium``, installed by scripts/install.sh) driven by Playwright
against a real uvicorn server on 127.0.0.1 serving the tiny contract detector.
"""

from __future__ import annotations

import io
import shutil
import socket
import threading
import time

import httpx
import numpy as np
import pytest
from PIL import Image

from detectops.serve import ServeSettings, create_app
from tests.support.tiny_detector import make_tiny_detector

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture()
def server_url(tmp_path):
    import uvicorn

    model = make_tiny_detector(tmp_path / "tiny")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(ServeSettings(model_dir=model)), host="127.0.0.1",
                                           port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            if httpx.get(url + "/readyz").status_code == 200:
                break
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(30)


def test_upload_page_draws_labelled_boxes(server_url, tmp_path):
    if CHROMIUM is None:
        pytest.skip("Chromium is not installed: `apt-get install -y chromium` (scripts/install.sh does it)")
    from playwright.sync_api import sync_playwright
    from skimage import data

    photo = tmp_path / "astronaut.jpg"
    Image.fromarray(data.astronaut()).save(photo, "JPEG")
    bad = tmp_path / "notes.jpg"
    bad.write_bytes(b"not an image at all")

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        try:
            page = browser.new_page()
            external = []
            page.on("request", lambda r: None if r.url.startswith((server_url, "blob:", "data:")) else external.append(r.url))
            page.goto(server_url + "/")
            page.set_input_files("#file", str(photo))
            page.click("#go")
            page.wait_for_function("document.getElementById('status').textContent.includes('object(s)')",
                                   timeout=30_000)
            assert page.text_content("#status").startswith("2 object(s)")
            labels = page.locator("#results tbody tr td:first-child").all_text_contents()
            assert labels == ["person", "dog"]
            size = page.evaluate("[document.getElementById('canvas').width, document.getElementById('canvas').height]")
            assert size == [512, 512]
            # The person box (0.1, 0.2, 0.5, 0.6) has its left edge at x=102.4: that pixel is the box
            # colour, not the photo's. Compare with the photo's own pixel there.
            drawn = page.evaluate("Array.from(document.getElementById('canvas').getContext('2d')"
                                  ".getImageData(102, 150, 1, 1).data.slice(0, 3))")
            photo_px = np.asarray(Image.open(photo).convert("RGB"))[150, 102]
            assert np.abs(np.asarray(drawn, dtype=int) - photo_px.astype(int)).max() > 60
            # Raising the threshold hides the dog (score 0.6) without a new request.
            page.fill("#min_score", "0.7")
            page.dispatch_event("#min_score", "input")
            assert page.locator("#results tbody tr").count() == 1
            # A broken upload shows the server's error message.
            page.set_input_files("#file", str(bad))
            page.click("#go")
            page.wait_for_function("document.getElementById('status').className === 'error'", timeout=30_000)
            assert "not an image" in page.text_content("#status")
            assert external == []  # no CDN, nothing outside this server
        finally:
            browser.close()
