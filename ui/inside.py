"""The Inside page's glue: the model looked into, the text it reads, what of its top layer to show, and
the figures of its units and of the gradient through time (charrnn.inside computes them)."""

import html
from dataclasses import dataclass, field, replace

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from charrnn import inside as core
from charrnn.data import CorpusError
from charrnn.runs.checkpoint import describe, read_checkpoint
from charrnn.runs.store import RunStore
from charrnn.train import TrainConfig, build_model
from ui import models, views
from ui.corpus import load_text
from ui.display import error, literal
from ui.state import bound, keep_valid
from ui.training import while_own_run_trains

TEXTS = ["The Time Machine", "typed", "last generation"]
RECIPE_TOKENS = 10000  # the chapter trains on the first 10,000 chars; what follows is held out
SETTINGS = {  # the page's permanent settings (see ui.state.bound), with their defaults
    "ins_text": "The Time Machine",
    "ins_start": RECIPE_TOKENS,
    "ins_length": 150,
    "ins_typed": "the time traveller for so it will be convenient to speak of him",
    "ins_show": "H",
    "ins_pick": "largest variance",
    "ins_n": 12,
    "ins_units": "0-7",
    "ins_feature": "space",
    "ins_steps": 35,
    "ins_loss": "mean",
    "ins_batch": 1,
}


def setting(name: str, most: int | None = None) -> dict:
    """Widget arguments bound to one of the page's settings (created at its default the first time),
    capped at `most` when given (a smaller model has fewer units, a longer num_steps fewer minibatches)."""
    st.session_state.setdefault(name, SETTINGS[name])
    if most is not None:
        for key in (name, f"inside_{name}"):
            if key in st.session_state:
                st.session_state[key] = min(st.session_state[key], most)
    return bound(name, "inside")


@dataclass
class Subject:
    """The model looked into, with what its run recorded (when it came from one)."""

    model: object
    vocab: object
    label: str  # what it is, for a caption
    config: TrainConfig | None = None  # its run's settings: rebuilds the initial weights
    history: list[dict] = field(default_factory=list)  # its run's epochs: grad_norm and clipped

    def named(self) -> str:
        """Where it comes from and what it is (kind, cell, layers, width), for a caption."""
        c = self.model.config
        return f"{self.label}: {describe(c)}, {c.num_hiddens:,} hidden units a layer"


def waiting():
    """What Inside says when no run has a checkpoint yet."""
    if while_own_run_trains():
        return
    st.info("No model yet: train one on the Train page (or pick a checkpoint file).")


def choose_model() -> Subject:
    """The model picker (a saved run's checkpoint or a checkpoint file, ui.models), with what its run
    recorded; stops the page when there is none."""
    chosen = models.choose("inside", waiting)
    if chosen.run_id is not None:
        store = RunStore()
        run, history = store.run(chosen.run_id), store.history(chosen.run_id)
        return Subject(chosen.model, chosen.vocab, chosen.label, TrainConfig.from_dict(run["config"]), history)
    key = chosen.ident[1:]
    extras = st.session_state.get("ins_checkpoint_extras")
    if (extras is None or extras[0] != key) and chosen.file is not None:
        try:
            chosen.file.seek(0)  # the model was read from it already
            extras = st.session_state["ins_checkpoint_extras"] = (key, *recorded(read_checkpoint(chosen.file)))
        except ValueError:  # it loaded as a model: a part the loader does not check is left out
            extras = None
    config, history = (extras[1], extras[2]) if extras and extras[0] == key else (None, [])
    return Subject(chosen.model, chosen.vocab, chosen.label, config, history)


def recorded(ckpt: dict) -> tuple[TrainConfig | None, list[dict]]:
    """A checkpoint's train config and gradient-norm history, where well formed: the loader checks the
    weights, not these, and a file is anyone's (a malformed part is left out, not an error)."""
    config = ckpt.get("train_config")
    try:
        config = TrainConfig.from_dict(config).validate() if isinstance(config, dict) else None
    except (TypeError, ValueError):
        config = None
    history = ckpt.get("history") if isinstance(ckpt.get("history"), list) else []
    fields = ("epoch", "grad_norm", "clipped")
    good = [h for h in history if isinstance(h, dict) and all(type(h.get(k)) in (int, float) for k in fields)]
    return config, good


def initial_model(subject: Subject):
    """The model's weights before training, rebuilt from its run's seed; None without a config, or with one
    for another model (kind, cell, layers, width: a checkpoint's train config is the file's word)."""
    c = subject.config
    if c is None or c.model_config(len(subject.vocab)) != subject.model.config:
        return None
    model = build_model(len(subject.vocab), replace(c, device="cpu"))  # built on the CPU, then moved
    return model.to(next(subject.model.parameters()).device)


@st.cache_data(show_spinner=False, max_entries=4)
def time_machine_text() -> str:
    """The Time Machine, book preprocessing (the recipe's text); raises CorpusError offline."""
    return load_text("time_machine", "book", RECIPE_TOKENS, None).text


def choose_text() -> str:
    """The text to read: a slice of The Time Machine, a typed text or the last generation; stops when none."""
    source = st.radio("Text", TEXTS, **setting("ins_text"), horizontal=True)
    if source == "typed":
        return st.text_area(
            f"text (up to {core.MAX_TEXT:,} characters)", max_chars=core.MAX_TEXT, height=100, **setting("ins_typed")
        )
    if source == "last generation":
        result = st.session_state.get("gen_result", (None, None))[1]
        if result is None:
            st.info("Nothing generated yet in this session: continue a prefix on the Generate page first.")
            st.stop()
        if len(result.text) > core.MAX_TEXT:
            st.caption(f"The generation's last {core.MAX_TEXT:,} characters (the limit of this view):")
        return result.text[-core.MAX_TEXT :]
    try:
        text = time_machine_text()
    except CorpusError as e:
        error(f"The Time Machine: {e} Meanwhile, pick the text 'typed' above.")
        st.stop()
    c = st.columns(2)
    c[0].number_input("from character", min_value=0, max_value=len(text) - 1, step=100, **setting("ins_start"))
    c[1].number_input("characters", min_value=1, max_value=core.MAX_TEXT, step=50, **setting("ins_length"))
    start = st.session_state["ins_start"]
    c[0].caption(f"The recipe trains on characters 0-{RECIPE_TOKENS - 1:,}; from {RECIPE_TOKENS:,} on it never saw.")
    return text[start : start + st.session_state["ins_length"]]


def choose_shown(model) -> str:
    """What of the top layer to show: H, or one of the gates its cell has (a GRU's Z, R; an LSTM's I, F, O, C)."""
    options = list(core.shown_for(model))
    keep_valid("ins_show", "inside", options)  # a gate the model looked at before may not be this cell's
    return st.radio("Show", options, format_func=core.SHOWN.get, horizontal=True, **setting("ins_show"))


# ---- figures -------------------------------------------------------------------------------------------


def shown_chars(text: str) -> list[str]:
    """Each character as a label: visible (· for a space) and escaped (Plotly reads tags in labels)."""
    return [html.escape(views.visible_chars(ch), quote=False) for ch in text]


LABELLED = 150  # up to this many characters each gets a tick label; longer texts get position numbers
RED, BLUE = "178,24,43", "33,102,172"  # the ends of the RdBu scale
LEGEND_ON_TOP = dict(margin=dict(l=10, r=10, t=30, b=10), legend=dict(orientation="h", yanchor="bottom", y=1.02, x=0))


def colours(show: str, states) -> dict:
    """The heatmap's colour scale for `show` over core.value_range: a diverging one for H and C (red +,
    blue -); white (shut) to red (open) for a gate."""
    lo, hi = core.value_range(show, states)
    scale = dict(colorscale=[[0, "white"], [1, f"rgb({RED})"]]) if lo == 0 else dict(colorscale="RdBu", zmid=0)
    return dict(zmin=lo, zmax=hi, reversescale=lo < 0, colorbar=dict(title=show), **scale)


def heatmap_figure(states, text: str, units: list[int], labels: list[str], colour: dict) -> go.Figure:
    """Units (rows) over the characters (columns), coloured on the scale `colours` gives."""
    chars = shown_chars(text)
    fig = go.Figure(
        go.Heatmap(
            z=states[:, units].T.tolist(),  # (units, characters)
            x=list(range(len(text))),
            y=labels,
            customdata=[[[ch, i] for i, ch in enumerate(chars)]] * len(units),  # %{x} would show the tick label
            **colour,
            hovertemplate="char %{customdata[0]} at position %{customdata[1]}<br>%{y}: %{z:.3f}<extra></extra>",
        )
    )
    if len(text) <= LABELLED:  # a label per character; thinned labels would read as nonsense words
        fig.update_xaxes(tickmode="array", tickvals=list(range(len(text))), ticktext=chars, tickangle=0)
        fig.update_xaxes(tickfont=dict(family="monospace", size=10), title_text="character")
    else:
        fig.update_xaxes(title_text="position in the text (hover for the character)")
    fig.update_yaxes(autorange="reversed", type="category")
    fig.update_layout(height=140 + 22 * len(units), margin=dict(l=10, r=10, t=10, b=10))
    return fig


def unit_html(text: str, values: list[float], unit: int, top: float) -> str:
    """The text with each character's background coloured by the unit's value (red +, blue -; as strong
    as |value| / top, top the heatmap's end), escaped."""
    spans = []
    for ch, v in zip(views.visible_chars(text), values, strict=True):
        title = html.escape(f"{ch!r}: unit {unit} = {v:+.3f}")
        style = f"background: rgba({RED if v >= 0 else BLUE},{min(1.0, abs(v) / top):.2f})"
        spans.append(f'<span title="{title}" style="{style}">{html.escape(ch)}</span>')
    return (
        '<div style="font-family: monospace; font-size: 1.05rem; line-height: 1.6; white-space: pre-wrap; '
        f'word-break: break-all">{"".join(spans)}</div>'
    )


def grad_figure(curves: dict[str, list[float]]) -> go.Figure:
    """||dL/dH_t|| per step t, one line per set of weights, on a log axis."""
    fig = go.Figure()
    for name, norms in curves.items():
        fig.add_trace(go.Scatter(x=list(range(1, len(norms) + 1)), y=norms, mode="lines+markers", name=name))
    fig.update_yaxes(type="log", exponentformat="power", title_text="||dL/dH_t|| (before clipping)")
    fig.update_xaxes(title_text="time step t")
    fig.update_layout(height=340, **LEGEND_ON_TOP)
    return fig


def grad_history_figure(history: list[dict], clip: float | None) -> go.Figure:
    """A run's mean gradient norm per epoch, the clipping threshold, and the epochs that clipped."""
    points = views.thin(history)
    epochs = [h["epoch"] for h in points]
    fig = go.Figure(go.Scatter(x=epochs, y=[h["grad_norm"] for h in points], name="mean gradient norm"))
    hit = [h for h in history if h["clipped"] > 0]
    fig.add_trace(
        go.Scatter(
            x=[h["epoch"] for h in hit],
            y=[h["grad_norm"] for h in hit],
            mode="markers",
            marker=dict(color="crimson", size=6),
            customdata=[100 * h["clipped"] for h in hit],
            hovertemplate="epoch %{x}: clipped in %{customdata:.0f}% of minibatches<extra></extra>",
            name=f"epochs that clipped ({len(hit)})",
        )
    )
    if clip:  # a trace, not add_hline: its annotation lands at 10**clip on a log axis
        ends = dict(x=[epochs[0], epochs[-1]], y=[clip, clip], mode="lines", line=dict(dash="dash", color="grey"))
        fig.add_trace(go.Scatter(**ends, name=f"clip θ = {clip:g}"))
    fig.update_yaxes(type="log", exponentformat="power", title_text="gradient norm (before clipping)")
    fig.update_xaxes(title_text="epoch")
    fig.update_layout(height=320, showlegend=True, **LEGEND_ON_TOP)
    return fig


def unknown_chars(text: str, vocab) -> None:
    """A warning listing the text's characters outside the model's vocab (read as <unk>)."""
    unknown = sorted({ch for ch in text if ch not in vocab})
    if unknown:
        st.warning("These characters are not in the model's vocabulary and are read as <unk>:")
        st.text(" ".join(repr(ch) for ch in unknown))


def show_ranking(model, vocab, text: str, feature: str):
    """The interpretable-cell search across the top layer: every unit of H and of each gate (and an LSTM's
    memory cell), ranked by how closely its values follow `feature` over the text."""
    ranked = core.rank_everything(model, vocab, text, feature)
    st.caption(literal(f"Across H and every gate of the top layer: the units that follow {feature!r} most closely."))
    table = pd.DataFrame(
        [(core.SHOWN[show], unit, round(r, 3)) for show, unit, r in ranked], columns=["what", "unit", "r"]
    )
    st.dataframe(table, hide_index=True, key="ins_ranking")
