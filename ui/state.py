"""Session-state plumbing: the permanent settings, the widgets bound to them, and page switches.

Settings live in permanent session-state keys ("hp_<field>" for TrainConfig, "gen_*", ...). A widget
never owns one: Streamlit drops the state of widgets a page switch removes, so each widget gets its
own key per page, is seeded from the permanent value and writes back through a callback.
"""

from dataclasses import asdict, fields
from pathlib import Path

import streamlit as st

from charrnn.train import TrainConfig

SOURCES = {"time_machine": "The Time Machine", "fallback": "Offline fallback text", "upload": "Uploaded .txt"}
HP_FIELDS = [f.name for f in fields(TrainConfig) if f.name not in ("prefix", "predict_every")]
PAGES = ("data", "train", "generate", "runs", "inside")  # the prefixes of the per-page widget keys

DEFAULTS = {
    **{f"hp_{k}": v for k, v in asdict(TrainConfig()).items() if k in HP_FIELDS},
    "hp_eval_every": float(TrainConfig.eval_every),  # whole epochs, or 1/k of one: the field takes fractions
    "corpus_source": "time_machine",
    "corpus_mode": "book",
    "live_paused": False,
    "checkpoint_every": 50,
    "runs_selected": [],
    "watch_run": None,  # a run of another session (or the CLI) watched live on the Train page
    "gen_run": None,  # the run Generate and Inside use, pinned once picked (ui.models)
    "gen_epoch": None,  # and its checkpoint's epoch
    "gen_model": "saved run",
    "gen_prefix": "time traveller",
    "gen_num": 50,
    "gen_decoding": "greedy (the book)",
    "gen_temperature": 1.0,
    "gen_top_k": 0,
    "gen_seed": 0,
}
ENTRY_RAN = "_entry_ran"


def via_entry(page_file: str):
    """First call of every page file. A fresh server asked first for a page's own address (/train)
    runs that file alone, in Streamlit's legacy pages/ mode, without the entry file's settings and
    sidebar: send the session through the entry file, which then switches to the page asked for."""
    if ENTRY_RAN not in st.session_state:
        st.session_state["_wanted_page"] = f"pages/{Path(page_file).name}"
        st.session_state["_wanted_params"] = st.query_params.to_dict()  # a shared link's settings
        st.switch_page("streamlit_app.py")


def entry_done():
    """Called by the entry file before it runs the page; finishes a `via_entry` detour."""
    st.session_state[ENTRY_RAN] = True
    st.session_state["_full_runs"] = st.session_state.get("_full_runs", 0) + 1  # see `bound`
    wanted = st.session_state.pop("_wanted_page", None)
    if wanted:
        st.switch_page(wanted, query_params=st.session_state.pop("_wanted_params", None))


def init_state():
    for key, default in DEFAULTS.items():
        st.session_state.setdefault(key, default)


def bound(name: str, page: str, form: bool = False, resend: bool = False) -> dict:
    """Widget arguments that tie a widget on `page` to the permanent setting `name`.

    Use as `st.slider(..., **ui.bound("hp_lr", "train"))`. Widgets in a form cannot have an
    on_change callback: the form's submit callback calls `keep_all(page)` instead. `resend`: send the
    value to the browser on every run, for a picker whose option labels change (a renamed run): the
    browser keeps the label it showed, and would otherwise show, then send back, a label that is gone.
    """
    key = f"{page}_{name}"
    # (Re)seed the widget when it is new, and also when it was missing from the last full run (a
    # page that ended early with st.stop): Streamlit keeps such a widget's value but the browser
    # mounts it afresh at its default (min_value), and would write that back. Setting the value
    # through session state makes Streamlit send it to the browser.
    run = st.session_state.get("_full_runs", 0)
    seen = st.session_state.setdefault("_bound_in_run", {})
    if resend or key not in st.session_state or seen.get(key) != run - 1:
        st.session_state[key] = st.session_state[name]
    seen[key] = run
    return {"key": key} if form else {"key": key, "on_change": keep, "args": (name, page)}


def keep(name: str, page: str):
    """on_change of a bound widget. Its key may be gone: a callback that ran before it in the same rerun (a
    preset filling the fields) replaced the setting and dropped the widget's state; that value stands."""
    if f"{page}_{name}" in st.session_state:
        st.session_state[name] = st.session_state[f"{page}_{name}"]


def keep_all(page: str):
    for name in DEFAULTS:
        if f"{page}_{name}" in st.session_state:
            keep(name, page)


def set_setting(name: str, value):
    """Change a permanent setting from a callback; the pages' widgets are reseeded from it. A whole number
    for a setting held as a float (a preset's eval_every 1) becomes one: a widget takes one type."""
    if isinstance(DEFAULTS.get(name), float) and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    st.session_state[name] = value
    for page in PAGES:
        st.session_state.pop(f"{page}_{name}", None)


def keep_valid(name: str, page: str, options: list, many: bool = False):
    """Drop from setting `name` (and its widget on `page`) choices that are gone, e.g. a deleted run."""
    for key in (name, f"{page}_{name}"):
        if key not in st.session_state:
            continue
        value = st.session_state[key]
        if many:
            st.session_state[key] = [v for v in value if v in options]
        elif value not in options:
            st.session_state[key] = options[0] if options else None


def train_config(**overrides) -> TrainConfig:
    """The form's TrainConfig (the book's recipe until the user changes it)."""
    values = {k: st.session_state[f"hp_{k}"] for k in HP_FIELDS}
    return TrainConfig(**{**values, **overrides})


def switch_to(page: str):
    """Ask for a page switch from a callback (st.switch_page does nothing there); see `follow_switch`."""
    st.session_state["switch_to"] = page


def follow_switch():
    """Called first by a page whose buttons ask for a switch (AppTest runs a page without the entry file)."""
    page = st.session_state.pop("switch_to", None)
    if page:
        st.switch_page(page)
