"""Drawing what every page shows alike: escaped messages, a run's progress and chart, a continuation."""

import html
import re

import streamlit as st

from charrnn.train import TrainConfig
from ui import views

URL = re.compile(r"https?://[^\s<>()\[\]`]+")


def literal(text: str) -> str:
    """Text for a Markdown-rendering element (st.error, st.caption, ...) shown exactly as written.

    Every Markdown character is escaped; a web address becomes a code span, so that it reads clean
    (no backslashes) but is never a link or an image, whoever wrote it (a file name can hold one)."""
    parts = URL.split(text)
    escaped = [re.sub(r"([\\`*_{}\[\]()#+\-.!|<>~$])", r"\\\1", part) for part in parts]
    urls = [f"`{u}`" for u in URL.findall(text)] + [""]
    return "".join(e + u for e, u in zip(escaped, urls, strict=True))


def error(message: str):
    """st.error for messages that may quote file names or user text."""
    st.error(literal(message))


def eta_text(history, num_epochs: int) -> str:
    if not history:
        return "first epoch running..."
    last = history[-1]
    left = (num_epochs - last.epoch) * last.elapsed / last.epoch
    return f"epoch {last.epoch} of {num_epochs}, about {left:,.0f} s left"


def show_run(
    history,
    config: TrainConfig,
    status: str,
    chart_key: str,
    summary: str = "",
    run_id: str | None = None,
    counting: tuple[str, float] | None = None,
):
    """The model, a run's progress, its perplexity chart with last epoch's figures beside it, the book's summary
    line once it has one, and greedy continuations: the Train page's own run and a watched one (`history`:
    EpochStats); `counting`: the yardstick's (label, value) on the run's held-out text, drawn as a line. The
    chart and the figures keep their place from the first epoch to the end (1366x768: both in the first
    screen), so that the end moves nothing."""
    num_epochs = config.num_epochs
    model = config.model_config(vocab_size=0)  # naming the model needs no vocab
    where = f" Recorded in the run store as run {run_id} (Runs page)." if run_id else ""
    st.caption(literal(f"The model: {views.model_text(model)}.{where}"))
    ended = f"{status} after {len(history)} of {num_epochs} epochs"
    done = history[-1].epoch / num_epochs if history else 0.0
    st.progress(done, text=eta_text(history, num_epochs) if status == "running" else ended)
    chart, figures = st.columns([3, 1], gap="small")
    last = history[-1] if history else None
    held = [h.val_perplexity for h in history if h.val_perplexity is not None]
    shown = [  # (label, value, help): short labels, so that two figures fit side by side next to the chart
        ("perplexity", f"{last.perplexity:.2f}" if last else "-", "training perplexity, last epoch"),
        ("held-out", f"{held[-1]:.2f}" if held else "-", "perplexity on the held-out text, last evaluation"),
        ("tokens/s", f"{last.tokens_per_sec:,.0f}" if last else "-", "training speed, last epoch"),
        ("grad norm", f"{last.grad_norm:.3f}" if last else "-", "mean gradient norm before clipping, last epoch"),
        ("clipped", f"{last.clipped:.0%}" if last else "-", "share of minibatches clipped, last epoch"),
    ]
    with figures.container(key=f"{chart_key}_figures"):
        for row in range(0, len(shown), 2):
            cells = st.columns(2, gap="small")
            for cell, (label, value, tip) in zip(cells, shown[row : row + 2], strict=False):
                cell.metric(label, value, help=tip)
    line = counting or ("", None)
    chart.plotly_chart(views.history_figure(history, line[1], line[0]), key=chart_key, config={"displaylogo": False})
    if summary:
        st.caption("Summary (as the book prints it)")
        st.code(summary, language=None)
    samples = [f"epoch {x.epoch:>5}: {x.sample}" for x in history if x.sample]
    st.caption(literal(f"Greedy continuation of {config.prefix!r} every {config.predict_every} epochs"))
    st.code("\n".join(samples[-50:]) or "(none yet)", language=None)


def show_continuation(prefix: str, generated: str):
    """Prefix in grey and the generated characters in bold blue, as escaped text (never Markdown);
    spaces show as "·" so that a run of generated spaces is not mistaken for nothing."""
    st.html(
        '<div style="font-family: monospace; font-size: 1.05rem; white-space: pre-wrap; word-break: break-all">'
        f'<span style="color: #888">{html.escape(views.visible_chars(prefix))}</span>'
        f'<span style="color: #1f77b4; font-weight: bold">{html.escape(views.visible_chars(generated))}</span></div>'
    )
