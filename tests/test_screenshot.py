"""The README's screenshot (docs/screenshot-project-page.png) shows a realistic project
page, made by this test: a project with a few releases, a wheel and an sdist each, a
yanked one, and a real-looking description. The test writes the picture to
test-artifacts/; copy it over the README's when the pages change."""

from __future__ import annotations

import hashlib
from pathlib import Path

import requests
from wharftest.distbuilder import build_sdist, build_wheel
from wharftest.server import WharfServer, upload_file

ROOT = Path(__file__).resolve().parent.parent
SHOT = ROOT / "test-artifacts" / "screenshot-project-page.png"
README_SHOT = ROOT / "docs" / "screenshot-project-page.png"
#: sha256 of the screenshot the README showed before issue 18: a test fixture's page
#: (a hostile description with a script and a broken image).
FIXTURE_SHOT = "dc10889b4ca53b75bd2c3c07c4c05ac7943837a6d469f13da18b8f6ec5d7dd46"

DESCRIPTION = """# acme-weather

Forecasts and observations from ACME's weather stations, as pandas-free Python objects.

```python
from acme_weather import Station

station = Station("EDDB")
print(station.latest().temperature)
```

## Install

    pip install acme-weather

## Changes in 2.1

- `Station.history()` takes a `since` date.
- Wind gusts are reported in m/s, like the other speeds.
"""


def test_readme_screenshot_of_a_realistic_project_page(chromium, tmp_path: Path) -> None:
    server = WharfServer(tmp_path / "root").start()
    try:
        write = ("local", server.write_secret)
        for version in ("1.4.2", "2.0.0", "2.1.0"):
            wheel = build_wheel(
                tmp_path / version,
                "acme-weather",
                version,
                summary="Forecasts and observations from ACME's weather stations",
                description=DESCRIPTION,
                requires_python=">=3.9",
            )
            sdist = build_sdist(
                tmp_path / version / "sdist", "acme-weather", version, requires_python=">=3.9"
            )
            for dist in (wheel, sdist):
                assert upload_file(server, dist.path, "acme-weather", version, write).ok
            if version == "2.0.0":
                assert requests.post(
                    f"{server.url}simple/acme-weather/{wheel.filename}/yank",
                    auth=write,
                    data={"reason": "wrong wind units"},
                    timeout=10,
                ).ok
        page = chromium.new_page(viewport={"width": 1100, "height": 900})  # type: ignore[attr-defined]
        page.goto(server.url + "simple/acme-weather/")
        page.fill("#repo", "local")
        page.fill("#secret", server.read_secret)
        page.click("#login")
        page.wait_for_url(server.url + "simple/acme-weather/")
        shown = page.inner_text("body")
        assert "acme-weather" in shown and "Station.history()" in shown
        assert "yanked: wrong wind units" in page.inner_text("#files")
        assert "pwned" not in page.content() and "<script" not in page.content()
        SHOT.parent.mkdir(exist_ok=True)
        page.screenshot(path=str(SHOT), full_page=True)
        page.close()
    finally:
        server.stop()


def test_readme_screenshot_is_not_the_old_fixture() -> None:
    assert "](docs/screenshot-project-page.png)" in (ROOT / "README.md").read_text()
    assert hashlib.sha256(README_SHOT.read_bytes()).hexdigest() != FIXTURE_SHOT
