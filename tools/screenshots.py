"""Screenshots of driftloop's pages from a demo run, for the README (``make screenshots``).

The closed-loop demo (``driftloop.loop_demo``: v1 trained, served, the world drifts, the monitor retrains,
the canary is promoted) runs in a temporary home; then headless Chromium (Debian's ``chromium``) renders three
pages into docs/images/: the evaluation page of the drift retrain, its model card (the registry's Markdown,
rendered with the reports' own stylesheet) and the drift monitor's page for the model (its index as the monitor
serves it, else the report of the window that triggered the retrain). The PNGs are reduced to a
256-colour palette, which keeps them small and looks the same for pages of flat colours and text.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from driftloop.loop_demo import MODEL

REPO_ROOT = Path(__file__).resolve().parents[1]
OUTPUT = REPO_ROOT / "docs" / "images"
INSTALL_HINT = "apt-get install -y --no-install-recommends chromium"
WIDTH = 1200
MARGIN = 300  # pixels rendered below what is kept


@dataclass(frozen=True)
class Shot:
    """One page to screenshot: where it is, the PNG's name and how much of the page to show."""

    page: Path
    name: str
    height: int


def find_chromium() -> str | None:
    """``$CHROMIUM``, else Debian's ``chromium`` (or another Chrome) on the PATH."""
    candidates = [os.environ.get("CHROMIUM", ""), "chromium", "chromium-browser", "google-chrome"]
    return next((shutil.which(c) for c in candidates if c and shutil.which(c)), None)


def run_demo(home: Path) -> tuple[str, Path]:
    """A small closed-loop demo in ``home``; returns its registry URI and the drift monitor's store."""
    from driftloop import api
    from driftloop.loop_demo import DemoOptions, run_demo

    settings = api.Settings.resolve(home=str(home), registry=str(home / "registry"))
    options = DemoOptions(timeout=600.0)  # the demo as `make demo` runs it, with time to spare on a busy machine
    started = time.monotonic()
    summary = run_demo(settings, options, on_event=lambda e: print(f"  {e.seconds:6.1f} s  {e.source:<8} {e.text}",
                                                                  flush=True))
    print(f"demo: {summary.outcome} after {time.monotonic() - started:.0f} s", flush=True)
    if summary.promoted_version is None and not summary.triggers:
        raise SystemExit(f"screenshots: the demo did not retrain ({summary.outcome}); nothing to show")
    (store,) = sorted(home.glob("demo/*/monitor"))
    return summary.registry, store


def pages(registry_uri: str, store: Path, model: str, scratch: Path) -> list[Shot]:
    """The three pages, as files Chromium can open."""
    from driftloop.registry import open_registry

    registry = open_registry(registry_uri)
    newest = registry.list_versions(model)[-1].version  # the drift retrain
    evaluation = scratch / "evaluation.html"
    evaluation.write_bytes(registry.read_file(model, newest, "evaluation.html"))
    card = scratch / "model-card.html"
    card.write_text(markdown_page(registry.read_file(model, newest, "model_card.md").decode(),
                                  f"Model card: {model} v{newest}"))
    return [Shot(evaluation, "evaluation.png", 1900), Shot(card, "model-card.png", 1800),
            drift_page(store, model, registry, scratch)]


def markdown_page(markdown: str, title: str) -> str:
    """Markdown as the reports' HTML page (GitHub-style tables, as the Kubeflow dashboard and GitHub show it)."""
    from markdown_it import MarkdownIt

    from driftloop.reports.html import page

    body = MarkdownIt("commonmark", {"html": False}).enable("table").render(markdown)
    return page(title, body)


def drift_page(store: Path, model: str, registry, scratch: Path) -> Shot:
    """The monitor's index page of the model as it serves it now (the file on disk was written at the last
    window, before the promotion that ended the demo), else the report of the window that triggered the retrain."""
    reports = store / "reports" / model
    if (reports / "index.html").is_file():
        from driftloop.monitor.config import TriggerConfig
        from driftloop.monitor.pages import Pages
        from driftloop.monitor.windows import read_summaries

        index = scratch / "drift-index.html"
        pages = Pages(store / "reports", registry, TriggerConfig(), max_rows=0)  # the index reads neither
        index.write_text(pages.index(model, read_summaries(store)[model]))
        return Shot(index, "drift-index.png", 1300)
    from driftloop.monitor.windows import read_summaries

    summaries = read_summaries(store).get(model, [])
    triggered = [w for w in summaries if (w.get("decision") or {}).get("action") == "trigger"]
    drifted = [w for w in summaries if w.get("dataset_drift")]
    window = (triggered or drifted or summaries)[-1 if not triggered else 0]
    report = sorted(reports.glob(f"window-{window['id']:06d}*.html")) or sorted(reports.glob("window-*.html"))
    print(f"no drift index page for {model}: showing window {window['id']}'s report ({report[-1].name})")
    return Shot(report[-1], "drift-report.png", 1300)


def screenshot(chromium: str, shot: Shot, output: Path, profile: Path) -> Path:
    """Renders the page at WIDTH and saves its top ``shot.height`` pixels as a palette PNG."""
    raw = profile / f"raw-{shot.name}"
    # Taller than kept, then cropped: on a busy machine the last rows of the viewport were sometimes half painted.
    command = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
               "--hide-scrollbars", "--no-first-run", f"--user-data-dir={profile}", "--force-device-scale-factor=1",
               "--run-all-compositor-stages-before-draw", f"--window-size={WIDTH},{shot.height + MARGIN}",
               "--virtual-time-budget=5000", f"--screenshot={raw}", shot.page.as_uri()]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    if result.returncode != 0 or not raw.is_file():
        raise SystemExit(f"screenshots: chromium failed on {shot.page.name}: "
                         f"{(result.stderr.strip().splitlines() or ['no output'])[-1]}")
    return optimise(raw, output / shot.name, shot.height)


def optimise(source: Path, target: Path, height: int) -> Path:
    """The top ``height`` pixels as a 256-colour palette PNG."""
    from PIL import Image

    with Image.open(source) as image:
        image.convert("RGB").crop((0, 0, WIDTH, height)).quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(target, optimize=True)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=OUTPUT, help=f"where the PNGs go (default: {OUTPUT})")
    parser.add_argument("--keep", type=Path, help="keep the demo's home here (default: a temporary directory)")
    args = parser.parse_args(argv)
    chromium = find_chromium()
    if chromium is None:
        print(f"screenshots: chromium not found; install it ({INSTALL_HINT}) or set CHROMIUM to a Chrome binary",
              file=sys.stderr)
        return 1
    args.output.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="driftloop-screenshots-") as scratch:
        scratch = Path(scratch)
        home = args.keep.resolve() if args.keep else scratch / "home"
        registry_uri, store = run_demo(home)
        for shot in pages(registry_uri, store, MODEL, scratch):
            path = screenshot(chromium, shot, args.output, scratch / "chromium")
            shown = path.relative_to(REPO_ROOT) if path.is_relative_to(REPO_ROOT) else path
            print(f"{shown}: {shot.page.name}, {path.stat().st_size // 1024} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
