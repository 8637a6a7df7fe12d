"""Inside: the top layer's state and gates over a text, and the gradient through time (D2L 8.5 and 9.1-9.3's
ideas, made visible) for any cell and depth."""

import streamlit as st

import ui
import ui.inside as inside
import ui.links
from charrnn import inside as core
from charrnn.data import CorpusError

ui.via_entry(__file__)
ui.links.restore_and_sync("inside")  # a shared link's run and checkpoint, and the address kept in step

st.title("Inside")
st.write(
    "The network's memory is its hidden state: num_hiddens numbers a layer (512 in the recipe), each between -1 "
    "and 1, that it updates after every character. An RNN computes H_t = tanh(x_t W_xh + H_t-1 W_hh + b_h); a GRU "
    "(9.1) adds an update gate Z and a reset gate R, numbers between 0 and 1 that choose how much of the old state "
    "to keep and to use; an LSTM (9.2) keeps a memory cell C beside H, with input, forget and output gates I, F, O. "
    "Below, the top layer (the one the output reads) over a text of your choice, one row per unit: some units "
    "follow what the text is doing (a space, a word's letters). Then the chapter's second idea: training sends "
    "the loss's gradient back through every step, so it can grow or shrink step after step; the book clips it "
    "to a norm of 1, and the gates are there to carry it further."
)
subject = inside.choose_model()
ui.links.link_to_this_view("inside")  # after the pick: the link names the model
st.caption(ui.literal(f"Looking inside {subject.named()}."))
UNIT_PICKS = ["largest variance", "by number", "best match for a feature"]


def units_to_show(states, text: str) -> tuple[list[int], list[str]]:
    """The units the user asked for, and their labels (with r when matched to a feature)."""
    pick = st.radio("Units", UNIT_PICKS, **inside.setting("ins_pick"), horizontal=True)
    if pick == "by number":
        spec = st.text_input("unit numbers (0-based, e.g. 3, 17, 40-45)", **inside.setting("ins_units"))
        units = core.parse_units(spec, states.shape[1])  # a ValueError names the field
        return units, [f"unit {u}" for u in units]
    most = min(core.MAX_UNITS, states.shape[1])
    n = st.slider("how many units", min_value=1, max_value=most, **inside.setting("ins_n", most))
    if pick == "largest variance":
        units = core.top_variance(states, n)
        return units, [f"unit {u}" for u in units]
    feature = st.selectbox("feature of the text", list(core.FEATURES), **inside.setting("ins_feature"))
    r = core.correlations(states, core.feature_values(text, feature))
    units = core.top_correlated(r, n)
    return units, [f"unit {u} (r {r[u]:+.2f})" for u in units]


def heat_caption(show: str, top: float) -> str:
    if show not in ("H", "C"):
        return "Red: the gate is open (near 1) after reading that character, white: shut (near 0). Hover for values."
    scale = f" The scale reaches ±{top:.2f}, the largest |C| here: C is not held within ±1." if top > 1 else ""
    return f"Red: the unit is positive after reading that character, blue: negative.{scale} Hover for the values."


def hidden_units():
    text = inside.choose_text()
    show = inside.choose_shown(subject.model)
    try:
        states = core.hidden_states(subject.model, subject.vocab, text, show)  # (len(text), num_hiddens)
    except ValueError as e:
        ui.error(f"Text: {e}")
        return
    try:
        units, labels = units_to_show(states, text)
    except ValueError as e:  # unit numbers that are not: the message names the field
        ui.error(str(e))
        return
    inside.unknown_chars(text, subject.vocab)
    colour = inside.colours(show, states)
    st.caption(heat_caption(show, colour["zmax"]))
    st.plotly_chart(inside.heatmap_figure(states, text, units, labels, colour), key="ins_heatmap")
    if st.session_state.get("ins_unit") not in units:
        st.session_state["ins_unit"] = units[0]
    unit = st.selectbox(
        "One unit over the text", units, format_func=dict(zip(units, labels, strict=True)).get, key="ins_unit"
    )
    st.html(inside.unit_html(text, states[:, unit].tolist(), unit, colour["zmax"]))
    if st.session_state["ins_pick"] == "best match for a feature":
        inside.show_ranking(subject.model, subject.vocab, text, st.session_state["ins_feature"])


LOSS_NAMES = {"mean": "the minibatch's mean loss (what training uses)", "last step": "the last step's loss alone"}


def gradients():
    c = st.columns([1, 1, 2])
    c[0].number_input("num_steps", min_value=1, max_value=300, **inside.setting("ins_steps"))
    c[2].radio("gradient of", core.LOSSES, format_func=LOSS_NAMES.get, **inside.setting("ins_loss"))
    T = st.session_state["ins_steps"]
    try:
        indices = subject.vocab.encode(inside.time_machine_text()[: inside.RECIPE_TOKENS])
        count = ui.num_minibatches(indices, 32, T, "sequential", 0)
        c[1].number_input(  # a longer num_steps leaves fewer minibatches: the setting is capped at their number
            "minibatch of the first epoch", min_value=1, max_value=count, **inside.setting("ins_batch", count)
        )
        curves = {"current weights": norms(subject.model, indices, T)}
    except (ValueError, CorpusError) as e:
        ui.error(f"Gradients: {e}")
        return
    initial = inside.initial_model(subject)
    if initial is not None:
        curves[f"initial weights (seed {subject.config.seed})"] = norms(initial, indices, T)
    st.plotly_chart(inside.grad_figure(curves), key="ins_grads")
    if initial is None:
        st.caption("This model brings no training config that fits it, so its initial weights cannot be rebuilt.")
    if any(0 in curve for curve in curves.values()):
        st.caption("A norm of exactly 0 (it underflowed: the gradient vanished) cannot be drawn on a log axis.")
    if subject.history:
        clip = subject.config.clip if subject.config else None
        clipped = sum(h["clipped"] > 0 for h in subject.history)
        st.caption(
            f"Its run's gradient norm, each epoch's mean over its minibatches: in {clipped} of "
            f"{len(subject.history)} epochs some minibatches were clipped (red)."
        )
        st.plotly_chart(inside.grad_history_figure(subject.history, clip), key="ins_grad_history")


def norms(model, indices, T) -> list[float]:
    """||dL/dH_t|| on the recipe's minibatch (batch 32) picked above, from the state training carries into it."""
    X, Y, state = core.minibatch_with_state(model, indices, 32, T, st.session_state["ins_batch"])
    return core.grad_norms_through_time(model, X, Y, state, loss=st.session_state["ins_loss"])


st.header("The top layer over a text")
hidden_units()
st.header("Gradients through time")
st.write(
    "For one minibatch of The Time Machine (the recipe's 32 rows of the first 10,000 characters): the norm of the "
    "gradient of the loss with respect to each step's hidden state H_t of the top layer, before clipping. With the "
    "training loss, step t's gradient gathers the loss at t and, through the recurrence, at every later step; with "
    "the last step's loss alone, you see how much of it reaches each step back, which shrinks (vanishes) or grows "
    "(explodes) with distance in an RNN, and which a GRU's or an LSTM's gates can carry further."
)
gradients()
