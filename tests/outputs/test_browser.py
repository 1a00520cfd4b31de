"""report.html in a real browser: headless Chromium opens it from a file:// URL, with no network, and must
log no console error, build the plot, run the hover script, and paint a page that is not blank.

Console errors are caught twice: Chromium's own log (--enable-logging=stderr prints every console message as
a CONSOLE line) and a hook injected into this test's copy of the page that writes window errors and
console.error calls into <body data-console-errors>, which --dump-dom shows.
"""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest
from test_report import OBJECTIVES, full_study

from autoaccel.finish._summary import summarize_study
from autoaccel.outputs._report import build_report

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = [pytest.mark.slow, pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                                   reason="needs headless Chromium (Debian package 'chromium'; .ci/run installs it)")]
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--enable-logging=stderr", "--v=0", "--window-size=1280,2000"]
# Goes first in <head>, so it sees errors from everything after it. After the page's own scripts ran, it
# hovers the recommended trial's dot, as a user would, to exercise the cross-highlighting script.
HOOK = """<script>(function(){var errs=[];function save(){if(document.body)document.body.setAttribute('data-console-errors',JSON.stringify(errs));}
window.addEventListener('error',function(ev){errs.push(String(ev.message));save();});
var orig=console.error;console.error=function(){errs.push(Array.prototype.join.call(arguments,' '));save();return orig.apply(console,arguments);};
document.addEventListener('DOMContentLoaded',function(){save();var dot=document.querySelector('circle.dot[data-trial="REC"]');
if(dot)dot.dispatchEvent(new MouseEvent('mouseover',{bubbles:true}));});})();</script>"""


def chromium(page: Path, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args, page.as_uri()],
                          capture_output=True, text=True, timeout=180, check=False)


def open_page(html: str, rec: int, folder: Path) -> tuple[str, str, Path]:
    """(DOM after scripts, Chromium's log, screenshot path) for the page with the error hook injected."""
    folder.mkdir(parents=True, exist_ok=True)
    page = folder / "report.html"
    page.write_text(html.replace("<head>", "<head>" + HOOK.replace("REC", str(rec)), 1), encoding="utf-8")
    dom = chromium(page, folder / "profile", "--dump-dom")
    shot = folder / "shot.png"
    snap = chromium(page, folder / "profile", f"--screenshot={shot}")
    assert dom.returncode == 0 and snap.returncode == 0, dom.stderr[-2000:] + snap.stderr[-2000:]
    return dom.stdout, dom.stderr + snap.stderr, shot


def console_errors(dom: str, log: str) -> list[str]:
    found = re.search(r'data-console-errors="([^"]*)"', dom)
    assert found, "the injected error hook did not run, so the check would prove nothing"
    hooked = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    return hooked + [line for line in log.splitlines() if ":CONSOLE" in line]


def read_png(path: Path) -> np.ndarray:
    """Decode an 8-bit RGB/RGBA non-interlaced PNG (what Chromium writes) with zlib: no imaging dependency."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat = 8, []
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
    assert depth == 8 and color in (2, 6) and interlace == 0, f"unexpected PNG format {depth=} {color=} {interlace=}"
    bpp = 3 if color == 2 else 4
    raw = np.frombuffer(zlib.decompress(b"".join(idat)), np.uint8).reshape(height, 1 + width * bpp)
    rows, prev = [], np.zeros(width * bpp, np.int64)
    for filt, line in zip(raw[:, 0], raw[:, 1:].astype(np.int64)):
        if filt == 0:
            cur = line
        elif filt == 1:  # Sub: a running sum along each channel
            cur = np.cumsum(line.reshape(width, bpp), axis=0).reshape(-1) % 256
        elif filt == 2:  # Up
            cur = (line + prev) % 256
        else:  # Average and Paeth depend on the byte just decoded: byte by byte
            out, up = [0] * len(line), prev.tolist()
            for i, x in enumerate(line.tolist()):
                a = out[i - bpp] if i >= bpp else 0
                b, c = up[i], (up[i - bpp] if i >= bpp else 0)
                if filt == 3:
                    out[i] = (x + (a + b) // 2) % 256
                else:
                    p = a + b - c
                    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                    out[i] = (x + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) % 256
            cur = np.array(out, np.int64)
        rows.append(cur)
        prev = cur
    return np.stack(rows).reshape(height, width, bpp)[:, :, :3].astype(np.uint8)


@pytest.fixture(scope="module")
def opened(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str, Path]:
    study = full_study()
    summary = summarize_study(study, OBJECTIVES, 0.01)
    html = build_report(study, summary, {"task": "digits", "study": "s", "mode": "both"})
    return open_page(html, summary.recommended.trial, tmp_path_factory.mktemp("browser"))


def test_no_console_errors(opened: tuple[str, str, Path]) -> None:
    dom, log, _ = opened
    assert console_errors(dom, log) == []


def test_the_console_check_catches_a_broken_page(tmp_path: Path) -> None:
    study = full_study()
    html = build_report(study, summarize_study(study, OBJECTIVES, 0.01), {"task": "digits"})
    dom, log, _ = open_page(html.replace("</main>", "</main><script>console.error('planted');noSuchFunction();</script>"), 1, tmp_path)
    errors = console_errors(dom, log)
    assert any("planted" in e for e in errors) and any("noSuchFunction" in e for e in errors)


def test_the_plot_is_in_the_dom_and_the_hover_script_works(opened: tuple[str, str, Path]) -> None:
    dom, _, _ = opened
    svg = re.search(r'<svg id="pareto-plot".*?</svg>', dom, re.S)
    assert svg and svg.group(0).count("<circle") == 2 * 8, "two charts of eight trials each"
    # The hook hovered trial 1's dot: the script lit up that trial in both charts and in the table.
    assert len(re.findall(r'<circle class="dot pareto hl" data-trial="1"', dom)) == 2
    assert re.search(r'<tr data-trial="1" class="rec hl">', dom)


def test_the_screenshot_shows_a_painted_page(opened: tuple[str, str, Path]) -> None:
    _, _, shot = opened
    pixels = read_png(shot)
    assert pixels.shape[:2] == (2000, 1280)
    colours = np.unique(pixels.reshape(-1, 3), axis=0)
    assert len(colours) > 200, f"only {len(colours)} distinct colours: a blank or failed render"
    white = np.all(pixels >= 250, axis=2).mean()
    assert 0.05 < white < 0.95, f"{white:.0%} of the page is white"
    # The front's dots are painted in #2563eb, a colour nothing else on the page uses in any quantity:
    # finding enough of it proves the SVG itself rendered.
    blue = np.all(np.abs(pixels.astype(int) - (0x25, 0x63, 0xEB)) <= 6, axis=2).sum()
    assert blue > 300, f"only {blue} pixels of the Pareto-front blue (its legend swatch alone is under 100)"
