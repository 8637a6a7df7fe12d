"""The Generate page's glue: its inputs, one continuation made from them, and what changed since.

A result is kept with the inputs that made it, so the page can tell a current result from one made with
other settings (marked out of date, never shown as if current) and a model with no result of its own
(it gets one at once: "Generate from it" lands on a page that shows the run's continuation)."""

import streamlit as st

from charrnn.generate import generate
from ui.display import error
from ui.training import device_text, quick_train, while_own_run_trains

# The inputs in the order a result keeps them, as the page names them.
NAMES = ("model", "prefix", "number of characters", "decoding", "temperature", "top-k", "seed")


def inputs(chosen) -> dict:
    """What a continuation is made from: the model and the page's settings (sampling's only when sampling)."""
    s = st.session_state
    sampling = s["gen_decoding"] == "sampling"
    return {
        "model": chosen.ident,
        "prefix": s["gen_prefix"],
        "number of characters": s["gen_num"],
        "decoding": s["gen_decoding"],
        "temperature": s["gen_temperature"] if sampling else 0.0,
        "top-k": (s["gen_top_k"] or None) if sampling else None,
        "seed": s["gen_seed"] if sampling else None,
    }


def run(chosen, values: dict):
    """Continue the prefix; the result is kept with the inputs that made it as `gen_result` (the Inside
    page reads its text). (None, None) after an error shown on the page."""
    made = tuple(values[n] for n in NAMES)
    try:
        result = generate(
            chosen.model,
            chosen.vocab,
            values["prefix"],
            values["number of characters"],
            temperature=values["temperature"],
            top_k=values["top-k"],
            seed=values["seed"],
        )
    except ValueError as e:
        error(str(e))
        st.session_state.pop("gen_result", None)
        return None, None
    st.session_state["gen_result"] = (made, result)
    return made, result


def changed(made: tuple, values: dict) -> list[str]:
    """The names of the inputs that differ from those that made the result on screen."""
    return [n for n, v in zip(NAMES, made, strict=True) if values[n] != v]


def no_model_yet():
    """What Generate says when no run has a checkpoint: the visitor's run is on its way, or Quick training."""
    if while_own_run_trains():
        return
    st.info("No run has a checkpoint yet: train one (here, with the book's recipe, or on the Train page).")
    st.button(
        f"Quick training: the book's recipe on {device_text(st.session_state['hp_device'])}",
        on_click=quick_train,
        type="primary",
        key="gen_quick",
    )
    if st.session_state.get("train_error"):
        error(st.session_state["train_error"])
