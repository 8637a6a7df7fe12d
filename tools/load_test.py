"""A short load test of the Train page (issue 6): N pages in one headless Chromium while one run trains.

    python tools/load_test.py --viewers 8 --seconds 30

Two phases on one `streamlit run` server (a private CHARRNN_HOME in a temporary folder):

1. no viewers: one page starts the run with its live view paused (nothing polls), for --seconds;
2. N viewers: page 0 starts the same run with its live view on (it polls once a second); pages
   1..N-1 then open the Train page in sessions of their own, where the run is listed under "Training
   elsewhere on this machine", and pick it in "Watch live (read-only)": they poll it once a second
   from the run store. All N pages poll, for --seconds.

Figures: per page, the time from each poll (the last websocket message the page sent, i.e. the
fragment's rerun request) to the chart's data changing in the DOM, p50/p95 over all pages; the server
process's CPU in cores from /proc/<pid>/stat (utime+stime of the server PID and all its threads, so
the browsers' CPU is excluded, and so is the training, which runs in a child process (charrnn.runs.worker):
what is left is the cost of serving the pages); the run's tokens/s (median over its epochs in the
window, from the run store) in both phases. Every page is checked for errors and a stuck rerun.
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import appserver  # tools/appserver.py: this script's folder is on sys.path

ROOT = appserver.ROOT
sys.path.insert(0, str(ROOT))

from charrnn.runs.store import RunStore  # noqa: E402

# Timestamps (performance.now) of every websocket message the page sends, and of every change of
# the perplexity chart's data (its point count or last epoch), from the first paint on.
RECORD = """
window.__sent = []; window.__updates = [];
const send = WebSocket.prototype.send;
WebSocket.prototype.send = function (data) { window.__sent.push(performance.now()); return send.call(this, data); };
let last = null;
new MutationObserver(() => {
  const el = document.querySelector("[data-testid='stPlotlyChart'] .js-plotly-plot");
  if (!el || !el.data || !el.data.length) return;
  const x = el.data[0].x, key = x.length + ":" + x[x.length - 1];
  if (key !== last) { last = key; window.__updates.push(performance.now()); }
}).observe(document, {subtree: true, childList: true, attributes: true, characterData: true});
"""
TICKS = os.sysconf("SC_CLK_TCK")


def start_server(home: str):
    """The app on a free port with its run store in `home`; (process, URL)."""
    try:
        return appserver.start(env={"CHARRNN_HOME": home})
    except RuntimeError as e:
        raise SystemExit(str(e)) from None


def cpu_seconds(pid: int) -> float:
    """utime + stime of the process and all its threads (live and exited), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # fields 14 and 15 of proc(5)


def process_table() -> dict[int, tuple[int, str, float]]:
    """pid -> (parent pid, command name, CPU seconds) of every process now."""
    table = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue  # it ended meanwhile
        name = text[text.index("(") + 1 : text.rindex(")")]
        fields = text.rsplit(")", 1)[1].split()
        table[int(stat.parent.name)] = (int(fields[1]), name, (int(fields[11]) + int(fields[12])) / TICKS)
    return table


def cpu_by_group(server_pid: int) -> dict[str, float]:
    """CPU seconds so far of: the server process, the training process(es) it started (its children),
    and the browsers (every chromium/chrome process)."""
    table = process_table()
    groups = {"server": 0.0, "training": 0.0, "browsers": 0.0}
    for pid, (ppid, name, cpu) in table.items():
        if pid == server_pid:
            groups["server"] += cpu
        elif ppid == server_pid:
            groups["training"] += cpu
        elif "chrom" in name:
            groups["browsers"] += cpu
    return groups


def settle(pg):
    pg.wait_for_selector("[data-testid='stApp'][data-test-script-state='notRunning']")
    pg.wait_for_timeout(300)


def open_train(context, url: str):
    pg = context.new_page()
    pg.set_default_timeout(60_000)
    pg.goto(url)  # not /train: a link straight to a page skips the entry file (see the report)
    pg.wait_for_selector("h1:has-text('charrnn studio')")
    settle(pg)
    pg.locator("[data-testid='stSidebar'] [data-testid='stPageLink'] a", has_text="Train").click()
    pg.wait_for_selector("h1:has-text('Train')")
    settle(pg)
    return pg


def fill(pg, settings: dict):
    for label, value in settings.items():
        box = pg.get_by_label(label, exact=True)
        box.fill(str(value))
        box.press("Tab")


def tokens_per_sec(home: str) -> tuple[float, int, str]:
    """Median tokens/s over the newest run's epochs (the first one, warming up, left out)."""
    store = RunStore(home)
    run = store.runs()[0]
    history = store.history(run["id"])
    rates = [h["tokens_per_sec"] for h in history[1:]] or [h["tokens_per_sec"] for h in history]
    return (statistics.median(rates) if rates else 0.0), len(history), run["id"]


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


def latencies(pg, t0: float) -> dict:
    """Poll -> chart change, for every chart change after t0 (browser clock, ms)."""
    sent, updates = pg.evaluate("[window.__sent, window.__updates]")
    sent = [s for s in sent if s >= t0]
    updates = [u for u in updates if u >= t0]
    lags = []
    for u in updates:
        before = [s for s in sent if s <= u]
        if before:
            lags.append(u - before[-1])
    gaps = [b - a for a, b in zip(updates, updates[1:], strict=False)]
    return {
        "polls_sent": len(sent),
        "chart_updates": len(updates),
        "poll_to_chart_ms_p50": percentile(lags, 0.5),
        "poll_to_chart_ms_p95": percentile(lags, 0.95),
        "longest_gap_between_updates_ms": max(gaps) if gaps else None,
        "lags": lags,
    }


def page_health(pg) -> dict:
    return {
        "exceptions": pg.locator("[data-testid='stException']").count(),
        "errors": [e.inner_text() for e in pg.locator("[data-testid='stAlert']").all() if "rror" in e.inner_text()],
        "script_state": pg.locator("[data-testid='stApp']").get_attribute("data-test-script-state"),
    }


def phase(browser, url: str, home: str, viewers: int, seconds: float, settings: dict, server_pid: int) -> dict:
    """One run of `seconds` with `viewers` pages open (0: one page, live view paused)."""
    context = browser.new_context(viewport={"width": 1400, "height": 1600})
    context.add_init_script(RECORD)
    trainer = open_train(context, url)
    fill(trainer, settings)
    if viewers == 0:  # nobody watches: the live view is paused before the run starts, so nothing polls
        trainer.get_by_text("Pause the live view").click()
        settle(trainer)
    trainer.get_by_role("button", name="Start", exact=True).click()
    settle(trainer)
    pages = [trainer]
    if viewers:
        trainer.wait_for_function("window.__updates.length >= 2")
        for _ in range(viewers - 1):  # other sessions: the run is listed as training elsewhere; watch it
            pg = open_train(context, url)
            pg.locator("[data-testid='stSelectbox']", has_text="Watch live (read-only)").click()
            pg.get_by_role("option").filter(has_text="training").first.click()
            pages.append(pg)
        for pg in pages:
            pg.wait_for_function("window.__updates.length >= 2")
    t0s = [pg.evaluate("performance.now()") for pg in pages]
    cpu0, groups0, wall0 = cpu_seconds(server_pid), cpu_by_group(server_pid), time.monotonic()
    trainer.wait_for_timeout(seconds * 1000)
    cpu1, groups1, wall1 = cpu_seconds(server_pid), cpu_by_group(server_pid), time.monotonic()
    result = {
        "viewers": viewers,
        "seconds": round(wall1 - wall0, 2),
        "server_cpu_cores": round((cpu1 - cpu0) / (wall1 - wall0), 3),
        "cores_by_process_group": {k: round((groups1[k] - groups0[k]) / (wall1 - wall0), 3) for k in groups0},
    }
    if viewers:
        per_page = [latencies(pg, t0) for pg, t0 in zip(pages, t0s, strict=True)]
        lags = [lag for p in per_page for lag in p.pop("lags")]
        result["poll_to_chart_ms_p50_all_pages"] = percentile(lags, 0.5)
        result["poll_to_chart_ms_p95_all_pages"] = percentile(lags, 0.95)
        result["polling_pages"] = {
            ("page 0 (trainer)" if i == 0 else f"page {i} (watcher)"): p for i, p in enumerate(per_page)
        }
        result["pages"] = [page_health(pg) for pg in pages]
    trainer.get_by_role("button", name="Stop", exact=True).click()
    deadline = time.monotonic() + 30  # a paused live view does not redraw: ask the run store
    while RunStore(home).runs()[0]["status"] == "running" and time.monotonic() < deadline:
        time.sleep(0.3)
    rate, epochs, run_id = tokens_per_sec(home)
    result.update(tokens_per_sec=round(rate), epochs=epochs, run_id=run_id)
    context.close()
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--viewers", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--num-hiddens", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--num-steps", type=int, default=8)
    parser.add_argument("--out", default=str(ROOT / "artifacts" / "load_test.json"))
    args = parser.parse_args()
    settings = {
        "num_hiddens": args.num_hiddens,
        "max_tokens (0 = all)": args.max_tokens,
        "batch_size": args.batch_size,
        "num_steps": args.num_steps,
        "num_epochs": 1_000_000,  # stopped at the end of the window
    }
    from playwright.sync_api import sync_playwright

    home = tempfile.mkdtemp(prefix="charrnn-load-")
    proc, url = start_server(home)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=appserver.CHROMIUM, headless=True, args=appserver.CHROMIUM_ARGS)
            alone = phase(browser, url, home, 0, args.seconds, settings, proc.pid)
            loaded = phase(browser, url, home, args.viewers, args.seconds, settings, proc.pid)
            browser.close()
    finally:
        output = appserver.stop(proc)
    if "Traceback" in output:
        print(f"the server printed a traceback:\n{output}", file=sys.stderr)
    summary = {
        "config": {**settings, "viewers": args.viewers, "seconds": args.seconds, "cpus": os.cpu_count()},
        "what_the_viewers_do": (
            "page 0 starts the run and polls its live view once a second; the other pages, each its own "
            "session, watch that run on their Train page (read-only, from the run store), also once a second"
        ),
        "cpu_method": (
            "utime+stime of the streamlit server PID (all its threads) from /proc/<pid>/stat over wall time; "
            "the browsers and the training process (charrnn.runs.worker) are other processes and are not counted, "
            "so this is the cost of serving the pages. cores_by_process_group splits the machine's CPU the "
            "same way: the server, its child training process, and every chromium process"
        ),
        "no_viewers": alone,
        "with_viewers": loaded,
        "server_cpu_serving_pages_cores": loaded["server_cpu_cores"],
        "tokens_per_sec_ratio": round(loaded["tokens_per_sec"] / max(alone["tokens_per_sec"], 1), 3),
    }
    text = json.dumps(summary, indent=2)
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
