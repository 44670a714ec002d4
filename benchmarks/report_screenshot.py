"""Screenshot an HTML report in headless Chromium, for the README (docs/report.png).

    python benchmarks/report_screenshot.py sktransfer-demo/report.html docs/report.png

``make demo`` writes ``sktransfer-demo/report.html``; the picture shows the top
of the page (summary, per-class table, confusion matrix) and the top losses.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path


def screenshot(html, png, width=1100, height=1700):
    """Render ``html`` in Chromium and save the top ``width`` x ``height`` pixels to ``png``."""
    from playwright.sync_api import sync_playwright

    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        raise SystemExit("chromium not found (apt-get install chromium)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": width, "height": height})
        page.goto(Path(html).resolve().as_uri(), wait_until="load")
        # The learning curve and parameters are long; show the summary, then the top losses.
        page.evaluate("""() => {
            for (const id of ['most-confused', 'learning-curve', 'examples', 'parameters']) {
                const el = document.getElementById(id);
                if (el) { el.style.display = 'none';
                          const h = el.previousElementSibling;
                          if (h && h.tagName === 'H2') h.style.display = 'none';
                          if (h && h.tagName === 'P') { h.style.display = 'none';
                            const h2 = h.previousElementSibling;
                            if (h2 && h2.tagName === 'H2') h2.style.display = 'none'; } } }
        }""")
        page.screenshot(path=str(png), clip={"x": 0, "y": 0, "width": width, "height": height})
        browser.close()
    from PIL import Image

    # 256 colours: a third of the bytes, no visible loss on a page of text and thumbnails.
    Image.open(png).convert("RGB").quantize(256).save(png, optimize=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("html")
    parser.add_argument("png")
    args = parser.parse_args()
    screenshot(args.html, args.png)
    print(f"wrote {args.png}")


if __name__ == "__main__":
    main()
