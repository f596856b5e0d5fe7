"""Reports as a person sees them: each kind rendered in headless Chromium, screenshotted, and checked
for console errors, network fetches and broken or empty charts. Skipped without Chromium.

Set LORATWIN_REPORT_SCREENSHOTS=DIR to keep the screenshots (CI artifacts)."""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import pytest

from loratwin.report import write_report, write_validation_report
from loratwin.report.html import Page
from loratwin.validate import error_table

WIDTH = 1280
ONE_PIXEL_PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="


def problems(check, expected_images: int | None = None) -> list[str]:
    """Everything wrong with a loaded page, in words; [] for a good report."""
    found = list(check.errors)
    found += [f"fetched {url}" for url in check.requests if not url.startswith(("file:", "data:"))]
    if expected_images is not None and len(check.images) != expected_images:
        found.append(f"{len(check.images)} images, expected {expected_images}")
    for img in check.images:
        if not img["complete"] or img["naturalWidth"] == 0 or img["naturalHeight"] == 0:
            found.append(f"broken image {img['alt'] or img['src']!r}")
        elif img["shownWidth"] < 200 or img["shownHeight"] < 100:
            found.append(f"image {img['alt']!r} shown at {img['shownWidth']:.0f}x{img['shownHeight']:.0f} px")
    return found


def screenshot_ok(data: bytes, path: Path) -> None:
    """The screenshot is a full-width PNG with more than a blank page in it; kept if asked for."""
    from PIL import Image

    image = Image.open(io.BytesIO(data)).convert("RGB")
    assert image.width == WIDTH and image.height > 1000
    colours = image.resize((320, image.height // 4)).getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 200
    path.write_bytes(data)
    keep = os.environ.get("LORATWIN_REPORT_SCREENSHOTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(keep) / path.name)


@pytest.mark.parametrize(("fixture", "charts"), [("sim_dir", 4), ("validation_dir", 2), ("sweep_dir", 4), ("plan_file", 2)])
def test_report_renders_cleanly(chromium, request, fixture, charts, tmp_path):
    index = write_report(request.getfixturevalue(fixture), tmp_path / "report")
    check = chromium.check(index.as_uri(), width=WIDTH)
    assert problems(check, expected_images=charts) == []
    assert check.title.endswith("· loratwin")
    screenshot_ok(check.screenshot, tmp_path / f"report-{fixture.removesuffix('_dir')}.png")


def test_validation_report_written_from_results_renders(chromium, validation_results, tmp_path):
    index = write_validation_report(validation_results, error_table(validation_results), tmp_path)
    assert problems(chromium.check(index.as_uri(), width=WIDTH), expected_images=2) == []


def test_the_check_sees_broken_images_script_errors_and_fetches(chromium, tmp_path):
    """The negative control: a page with each fault the checks must catch."""
    page = tmp_path / "broken.html"
    page.write_text(
        '<!DOCTYPE html><html><head><meta charset="utf-8"><title>broken</title>'
        '<link rel="stylesheet" href="http://example.invalid/style.css"></head><body>'
        '<img src="data:image/png;base64,AAAA" alt="corrupt" width="400" height="300">'
        '<img src="missing.png" alt="missing" width="400" height="300">'
        f'<img src="data:image/png;base64,{ONE_PIXEL_PNG}" alt="tiny">'
        '<script>console.error("chart data missing"); drawChart();</script></body></html>'
    )
    found = problems(chromium.check(page.as_uri(), width=WIDTH), expected_images=4)
    text = "\n".join(found)
    assert "broken image 'corrupt'" in text
    assert "broken image 'missing'" in text and "ERR_FILE_NOT_FOUND" in text
    assert "image 'tiny' shown at 1x1 px" in text
    assert "ReferenceError: drawChart is not defined" in text
    assert "console.error: chart data missing" in text
    assert "fetched http://example.invalid/style.css" in text
    assert "3 images, expected 4" in text


def test_a_report_with_a_corrupt_chart_is_caught(chromium, tmp_path):
    """Our own page builder with a chart that is not a PNG: the page loads, the chart is broken."""
    page = Page(title="corrupt chart", kind="test")
    page.chart("bad", b"this is not a png", alt="bad chart")
    check = chromium.check(page.write(tmp_path).as_uri(), width=WIDTH)
    assert problems(check, expected_images=1) == ["broken image 'bad chart'"]
