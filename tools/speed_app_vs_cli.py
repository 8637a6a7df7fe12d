"""The app's training speed against the CLI's (issue 3: the app must reach >= 90% of the CLI's tokens/s).

    python tools/speed_app_vs_cli.py --epochs 40 --reps 2

Same settings (the book's recipe, --epochs epochs), same machine, alternated so that other load hits
both alike:
- CLI: `python -m charrnn train --epochs E --json` in a subprocess;
- app: `streamlit run` with one headless Chromium page on Train, Start pressed, the live chart polling
  once a second as a user sees it, until the run finishes.
An uncounted app run comes first: a fresh server's first page load (Plotly, the app's JS) competes
with training for the 2 cores. Both record into a private run store; each run's figure is the
median tokens/s over its epochs (the first, warming up, left out). Prints a JSON summary and writes
artifacts/speed_app_vs_cli.json.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import appserver  # tools/appserver.py: this script's folder is on sys.path
from load_test import ARGS, CHROMIUM, ROOT, fill, open_train, settle, start_server, tokens_per_sec

from charrnn.runs.store import RunStore  # importable: load_test put the repo on sys.path


def cli_run(home: str, epochs: int) -> float:
    env = {**os.environ, "CHARRNN_HOME": home}
    cmd = [sys.executable, "-m", "charrnn", "train", "--epochs", str(epochs), "--device", "cpu", "--json"]
    subprocess.run(cmd, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
    return tokens_per_sec(home)[0]


def app_run(browser, url: str, home: str, epochs: int) -> float:
    context = browser.new_context(viewport={"width": 1400, "height": 1600})
    page = open_train(context, url)
    fill(page, {"num_epochs": epochs})
    before = len(RunStore(home).runs())
    page.get_by_role("button", name="Start", exact=True).click()
    settle(page)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:  # this run: a new one in the store (its process starts first)
        runs = RunStore(home).runs()
        if len(runs) > before and runs[0]["status"] != "running":
            break
        page.wait_for_timeout(500)
    context.close()
    return tokens_per_sec(home)[0]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=40, help="epochs of the recipe per run (default: 40)")
    parser.add_argument("--reps", type=int, default=3, help="CLI/app pairs (default: 3)")
    parser.add_argument(
        "--warmup-epochs",
        type=int,
        default=10,
        help="an uncounted first app run, so that the fresh server and browser have loaded (default: 10)",
    )
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    pairs = []
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as p:
        server, url = start_server(f"{tmp}/app")
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            if args.warmup_epochs:
                app_run(browser, url, f"{tmp}/app", args.warmup_epochs)
            for rep in range(args.reps):
                cli = cli_run(f"{tmp}/cli{rep}", args.epochs)
                app = app_run(browser, url, f"{tmp}/app", args.epochs)
                pairs.append(
                    {
                        "cli_tokens_per_sec": round(cli),
                        "app_tokens_per_sec": round(app),
                        "app_over_cli": round(app / cli, 3),
                        "load": round(os.getloadavg()[0], 2),
                    }
                )
                print(json.dumps(pairs[-1]), flush=True)
        finally:
            browser.close()
            appserver.stop(server)
    summary = {
        "epochs": args.epochs,
        "pairs": pairs,
        "median_app_over_cli": statistics.median(p["app_over_cli"] for p in pairs),
    }
    print(json.dumps(summary, indent=1))
    out = ROOT / "artifacts" / "speed_app_vs_cli.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
