"""Regenerate the README's screenshots of report.html (docs/img/report-*.png) in headless Chromium.

    obliviate demo --out runs/demo && python docs/img/screenshots.py runs/demo

Each screenshot shows some sections of the run's page (a copy holding only those sections, so
no crop coordinates are guessed), cut to its content and saved as a 256-colour PNG.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image, ImageChops

from obliviate.report.html import load_run, render

SHOTS = {"report-verdicts.png": ("verdicts", "table", "tradeoff"), "report-audit.png": ("audit", "quantization")}
WIDTH = 1300


def shoot(page: str, sections: tuple[str, ...], png: Path, tmp: Path) -> None:
    keep = "".join(re.search(rf'<section id="{s}">.*?</section>', page, re.S).group(0) for s in sections)
    trimmed = re.sub(r"<nav>.*</section>", f"<nav></nav>{keep}", page, count=1, flags=re.S)
    html = tmp / f"{png.stem}.html"
    html.write_text(trimmed)
    raw = tmp / png.name
    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or "google-chrome"
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    f"--user-data-dir={tmp / 'profile'}", f"--screenshot={raw}", f"--window-size={WIDTH},4000",
                    html.as_uri()], check=True, capture_output=True, timeout=120)
    img = Image.open(raw).convert("RGB")
    box = ImageChops.difference(img, Image.new("RGB", img.size, "white")).getbbox()
    img = img.crop((0, 0, WIDTH, min(img.height, box[3] + 16)))
    img.quantize(colors=256, method=Image.Quantize.FASTOCTREE).save(png, optimize=True)
    print(f"{png} {img.width}x{img.height}, {png.stat().st_size // 1024} KiB")


def main(run_dir: str = "runs/demo") -> None:
    page = render([load_run(Path(run_dir))])
    with tempfile.TemporaryDirectory() as tmp:
        for name, sections in SHOTS.items():
            shoot(page, sections, Path(__file__).parent / name, Path(tmp))


if __name__ == "__main__":
    main(*sys.argv[1:])
