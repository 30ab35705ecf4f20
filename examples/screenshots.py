"""The README's screenshots of `saescope serve`, taken from the real app on the default model.

Serves a finished quickstart (its index.db and SAE; default /work/runs/qs) on a local port,
drives Debian's headless Chromium through Playwright over every page, and writes one PNG per
page under docs/screenshots/:

    python examples/screenshots.py [QUICKSTART_DIR] [--out docs/screenshots]
"""

from __future__ import annotations

import argparse
import socket
import threading
import time
from pathlib import Path

import uvicorn
from playwright.sync_api import sync_playwright

from saescope.models import load_model
from saescope.serve.app import create_app
from saescope.serve.state import load_served


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", nargs="?", default="/work/runs/qs")
    parser.add_argument("--out", default="docs/screenshots")
    parser.add_argument("--word", default="death", help="what the search step looks for")
    parser.add_argument("--prompt", default="The old house by the sea was")
    args = parser.parse_args()
    run, out = Path(args.run), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    metrics = run / "report" / "metrics.json"
    served = load_served(
        "qs",
        run / "index.db",
        run / "saes" / "topk-w8192-k32",
        metrics if metrics.is_file() else None,
    )
    model = load_model(served.index.meta["model"])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(create_app([served], model), host="127.0.0.1", port=port, log_level="error")
    )
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    base = f"http://127.0.0.1:{port}/i/qs"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.set_default_timeout(300_000)

        def shot(name: str) -> None:
            page.screenshot(path=str(out / f"{name}.png"), full_page=name != "overview")
            print("wrote", out / f"{name}.png")

        page.goto(base)
        shot("overview")
        page.goto(f"{base}/search?q={args.word}")
        shot("search")
        page.click("#hits tr:nth-child(2) a")
        page.wait_for_selector("text=Top activations")
        feature = int(page.url.rsplit("/", 1)[1])
        page.fill("#test-text", f"They mourned the {args.word} of the old king.")
        page.wait_for_selector("#shaded span.tok")
        shot("feature")
        page.goto(f"{base}/map")
        shot("map")
        page.goto(f"{base}/inspect?prompt={args.prompt}")
        page.wait_for_selector("canvas[data-picture]")
        shot("inspector")
        page.goto(f"{base}/feature/{feature}")
        page.click("#steer-link")
        page.fill("textarea[name=prompt]", "I went to the")
        page.click("#steer-run")
        page.wait_for_selector("#continuations .steered")
        page.fill("#sweep-form input[name=vocabulary]", args.word)
        page.fill("#sweep-form input[name=samples]", "2")
        page.fill("#sweep-form input[name=max_new_tokens]", "12")
        page.click("#sweep-run")
        page.wait_for_selector("#sweep-plot circle")
        shot("steering")
        browser.close()
    server.should_exit = True


if __name__ == "__main__":
    main()
