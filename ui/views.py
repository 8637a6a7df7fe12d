"""Figures and tables built from plain data (histories, runs, minibatch layouts): no session state."""

import html
import math
import time
from dataclasses import fields

import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

from charrnn.batches import SeqDataLoader
from charrnn.models import ModelConfig
from charrnn.runs.checkpoint import describe
from charrnn.runs.store import RunStore
from charrnn.train import TrainConfig


def thin(history: list, most: int = 2000) -> list:
    """At most ~`most` evenly spaced points and always the last (each redraw resends the whole chart)."""
    step = max(1, len(history) // most)
    points = history[::step]
    if points and points[-1] is not history[-1]:
        points.append(history[-1])
    return points


def epoch_span(fig: go.Figure) -> float:
    """The epochs the figure's traces cover, from the first to the last (0 when it has none)."""
    xs = [x for trace in fig.data for x in (trace.x or ())]
    return max(xs) - min(xs) if xs else 0


def perplexity_layout(fig: go.Figure, revision: str, title: str = "perplexity") -> go.Figure:
    # A tick per epoch only where they fit (no "epoch 1.5" on a 3-epoch run); Plotly chooses them elsewhere.
    fig.update_xaxes(dtick=1 if epoch_span(fig) <= 10 else None)
    fig.update_layout(
        xaxis_title="epoch",
        yaxis_title=title,
        height=370,
        margin=dict(l=10, r=10, t=30, b=10),
        uirevision=revision,
        legend=dict(orientation="h", yanchor="bottom", y=1.02, x=0),
    )
    return fig


def yardstick_line(fig: go.Figure, value: float | None, label: str) -> go.Figure:
    """The counting model's held-out figure as a labelled dashed line: has the network beaten counting?"""
    if value is not None:
        fig.add_hline(y=value, line_dash="dash", line_color="gray", annotation_text=html.escape(label))
    return fig


def history_figure(history, counting: float | None = None, counting_label: str = "") -> go.Figure:
    """Training perplexity per epoch (a line) and held-out perplexity where it was evaluated (points),
    on one axis, with the counting yardstick's held-out figure as a line; long histories are thinned to
    ~2,000 points."""
    points = thin(history)
    fig = go.Figure(
        go.Scatter(
            x=[h.epoch for h in points],
            y=[h.perplexity for h in points],
            mode="lines+markers" if len(points) < 60 else "lines",
            name="training",
        )
    )
    held = held_out_points(history)
    if held:
        fig.add_trace(
            go.Scatter(
                x=[x for x, _ in held],
                y=[y for _, y in held],
                mode="markers+lines",
                line=dict(dash="dot"),
                name="held-out",
            )
        )
    bad = next((h.epoch for h in history if not math.isfinite(h.perplexity)), None)
    if bad is not None:  # an infinite perplexity cannot be drawn: mark the epoch instead
        fig.add_vline(x=bad, line_color="crimson", line_dash="dash", annotation_text=f"diverged at epoch {bad}")
    fig.update_layout(showlegend=True)
    return perplexity_layout(yardstick_line(fig, counting, counting_label), "ppl")


def held_out_points(history) -> list[tuple[float, float]]:
    """Every held-out evaluation of a history (EpochStats or stored rows) as (epochs trained, perplexity): those
    inside an epoch (a cadence of 1/k epoch) and those at its end."""
    get = (lambda h, k: h.get(k)) if history and isinstance(history[0], dict) else getattr
    return [
        point
        for h in history
        for point in [*(get(h, "val_points") or ()), (get(h, "epoch"), get(h, "val_perplexity"))]
        if point[1] is not None
    ]


def bar_figure(labels: list, values: list, x_title: str, y_title: str, height: int, colors=None) -> go.Figure:
    """A bar per token (category axis, kept in the given order): vocab counts, next-char probabilities.

    Labels are escaped: Plotly reads tags in them (a token from a checkpoint could be an `<a href>`)."""
    fig = go.Figure(go.Bar(x=[html.escape(str(label), quote=False) for label in labels], y=values, marker_color=colors))
    fig.update_layout(
        xaxis_title=x_title,
        yaxis_title=y_title,
        height=height,
        margin=dict(l=10, r=10, t=10, b=10),
        xaxis_type="category",
    )
    return fig


def token_label(token: str) -> str:
    """A token as a label people can see: whitespace tokens by their repr."""
    return repr(token) if token.isspace() else token


def visible_chars(text: str) -> str:
    return text.replace(" ", "·").replace("\n", "⏎")


def minibatch_map(num_tokens: int, b: int, t: int, sampling: str, seed: int) -> list[int]:
    """Which minibatch (1-based; 0 = none) reads each corpus position in the first epoch.

    The loader itself is run over the positions 0..n-1, so the picture is the real layout."""
    owner = [0] * num_tokens
    for k, (X, _) in enumerate(SeqDataLoader(list(range(num_tokens)), b, t, sampling, seed=seed), 1):
        for p in X.flatten().tolist():
            owner[p] = k
    return owner


def layout_figure(n: int, b: int, t: int, seed: int) -> go.Figure:
    """The first n tokens wrapped into the b sequential rows, coloured by minibatch, for both samplings."""
    seq, rnd = minibatch_map(n, b, t, "sequential", seed), minibatch_map(n, b, t, "random", seed)
    offset = next(i for i, owner in enumerate(seq) if owner)
    width = (n - offset - 1) // b  # the length of one sequential row

    def grid(owner):
        return [[owner[offset + r * width + j] or None for j in range(width)] for r in range(b)]

    fig = make_subplots(rows=1, cols=2, subplot_titles=("sequential: each row continues", "random: unrelated windows"))
    for col, owner in ((1, seq), (2, rnd)):
        fig.add_trace(
            go.Heatmap(
                z=grid(owner),
                coloraxis="coloraxis",
                hovertemplate="row %{y}, position %{x}: minibatch %{z}<extra></extra>",
            ),
            1,
            col,
        )
    fig.update_layout(
        coloraxis=dict(colorscale="Turbo", colorbar_title="minibatch"), height=360, margin=dict(l=10, r=10, t=40, b=10)
    )
    fig.update_yaxes(autorange="reversed", title_text="row")
    fig.update_xaxes(title_text="position in the row")
    return fig


# The hyperparameters in the order a user compares them: the optimizer's first (a study's trials vary them),
# then the model, then the data and the rest.
KEY_HPARAMS = ("lr", "clip", "num_hiddens", "num_steps", "batch_size", "num_epochs", "sampling", "max_tokens", "seed")
MODEL_FIELDS = ("model", "cell", "num_layers", "dropout")


def run_settings(run: dict) -> dict:
    """A stored run's config, with the model fields that older runs lack at what they trained: a 1-layer
    scratch rnn without dropout (TrainConfig's defaults, as an old checkpoint loads)."""
    return {**{k: getattr(TrainConfig, k) for k in MODEL_FIELDS}, **run["config"]}


def model_text(config: ModelConfig) -> str:
    """'a 2-layer scratch lstm, num_hiddens 256, dropout 0.2 in training': the model, as the pages name it."""
    dropout = f", dropout {config.dropout} in training" if config.dropout else ""
    dropout += f", weight drop {config.weight_drop} on W_hh in training" if config.weight_drop else ""
    dropout += f", n-gram share {config.ngram_weight:g}" if config.ngram_order else ""
    return f"{describe(config)}, num_hiddens {config.num_hiddens}{dropout}"


def run_model_text(run: dict) -> str:
    """`model_text` of a stored run's settings (no vocab is needed to name it)."""
    s = run_settings(run)
    fields = (s.get("num_hiddens"), s["model"], s["cell"], s["num_layers"], s["dropout"], s.get("weight_drop", 0.0))
    return model_text(ModelConfig(0, *fields, s.get("ngram_order", 0), s.get("ngram_weight", 0.0)))


def rounded(value, digits: int | None = None, significant: int | None = None):
    """A figure as far as it matters (`digits` decimals or `significant` figures); None stays None (a blank)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        return value
    if significant is not None:
        return float(f"{value:.{significant}g}")
    return round(value, digits) if digits else round(value)


def runs_table(runs: list[dict], mine: frozenset = frozenset()) -> pd.DataFrame:
    """One row per run: what a user compares first (name, status, held-out and training perplexity), then the
    hyperparameters (the optimizer's, the model's, the rest), then the bookkeeping. Figures are rounded to what
    matters; a missing one is None, which the table shows blank. `mine`: the visitor's runs, marked "yours"."""
    settings = [run_settings(r) for r in runs]
    any_dropout = any(s["dropout"] for s in settings)
    rows = []
    for r, s in zip(runs, settings, strict=True):
        model = {"model": s["model"], "cell": s["cell"], "layers": s["num_layers"]}
        if any_dropout:
            model["dropout"] = s["dropout"]
        hparams = {k: s.get(k) for k in KEY_HPARAMS}
        hparams["lr"] = rounded(hparams["lr"], significant=3)
        rows.append(
            {
                "name": r["name"],
                "yours": "yours" if r["id"] in mine else "",
                "status": r["status"],
                "held-out (best)": rounded(r.get("best_val_perplexity"), 2),
                "held-out (final)": rounded(r.get("final_val_perplexity"), 2),
                "final perplexity": rounded(r["final_perplexity"], 2),
                "best perplexity": rounded(r["best_perplexity"], 2),
                "epochs": r["epochs"],
                **{k: hparams[k] for k in KEY_HPARAMS[:3]},
                **model,
                **{k: hparams[k] for k in KEY_HPARAMS[3:]},
                "tokens/s": rounded(r["tokens_per_sec"]),
                "reason": r["reason"] or "",
                "device": r["device"],
                "host": r.get("host") or "",  # a shared database holds runs of many machines
                "owner": r.get("owner") or "",  # who signed in to start it; blank: an anonymous visitor, or the CLI
                "duration (s)": rounded(r["duration"], 1),
                "created": pd.Timestamp(time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r["created"]))),
                "text": f"{r['corpus'].get('name', '?')}, {r['corpus'].get('mode', '?')}",
                "id": r["id"],
            }
        )
    return pd.DataFrame(rows)


PPL = "%.2f"
RUNS_COLUMNS = {
    "name": st.column_config.TextColumn(width="medium"),
    "yours": st.column_config.TextColumn(help="the runs you started (this browser, or your link)"),
    "held-out (best)": st.column_config.NumberColumn(format=PPL, help="the lowest perplexity on the held-out text"),
    "held-out (final)": st.column_config.NumberColumn(format=PPL, help="perplexity on the held-out text, at the end"),
    "final perplexity": st.column_config.NumberColumn(format=PPL, help="training perplexity, last epoch"),
    "best perplexity": st.column_config.NumberColumn(format=PPL, help="the lowest training perplexity"),
    "tokens/s": st.column_config.NumberColumn(format="%d"),
    "duration (s)": st.column_config.NumberColumn(format="%.1f"),
    "lr": st.column_config.NumberColumn(format="%g"),
    "clip": st.column_config.NumberColumn(format="%g", help="clip theta (0: off)"),
    "layers": st.column_config.NumberColumn(help="stacked recurrent layers (num_layers)"),
    "dropout": st.column_config.NumberColumn(format="%g", help="in training only"),
    "created": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm"),
}


METRICS = {"perplexity": "training perplexity", "val_perplexity": "held-out perplexity"}


def runs_figure(runs: list[dict], labels: dict, metric: str = "perplexity", counting: tuple = ()) -> go.Figure:
    """One metric (a key of METRICS) of several runs on one chart, one trace per run; the held-out one with
    a line per (label, value) in `counting`: the yardstick on each text and split the runs were judged on."""
    fig = go.Figure()
    store = RunStore()  # opened once: opening runs its schema and interrupted-run checks
    for r in runs:
        history = thin(store.history(r["id"]))
        points = held_out_points(history) if metric == "val_perplexity" else [(h["epoch"], h[metric]) for h in history]
        points = [(x, y) for x, y in points if y is not None]
        fig.add_trace(
            go.Scatter(
                x=[x for x, _ in points],
                y=[y for _, y in points],
                mode="lines+markers" if len(points) < 60 else "lines",
                name=html.escape(labels[r["id"]]),  # Plotly reads tags in names; a run's name is text
            )
        )
    fig.update_layout(showlegend=True)
    for label, value in counting if metric == "val_perplexity" else ():
        yardstick_line(fig, value, label)
    return perplexity_layout(fig, "runs", METRICS[metric])


def shown(value) -> str:
    """A setting as the comparison table writes it: missing is blank, never "None"."""
    return "" if value is None else str(value)


def config_table(runs: list[dict], labels: dict):
    """The runs' settings side by side (a column per run); the rows that differ are highlighted."""
    settings = [run_settings(r) for r in runs]  # an old run's missing cell is the rnn it trained
    rows = {name: [shown(s.get(name)) for s in settings] for name in (f.name for f in fields(TrainConfig))}
    rows["text"] = [str(r["corpus"].get("name", "")) for r in runs]
    rows["text mode"] = [str(r["corpus"].get("mode", "")) for r in runs]
    rows["text SHA-1"] = [str(r["corpus"].get("sha1", ""))[:12] for r in runs]
    rows["device used"] = [r["device"] for r in runs]
    table = pd.DataFrame.from_dict(rows, orient="index", columns=[labels[r["id"]] for r in runs])
    table.insert(0, "differs", [len(set(values)) > 1 for values in rows.values()])
    return table.style.apply(lambda row: ["background-color: #ffe08a" if row["differs"] else ""] * len(row), axis=1)
