"""Tune: a hyperparameter search on Optuna; its trials train here one at a time, and any study of the
shared storage (workers of `python -m charrnn tune` on other machines included) can be watched."""

import streamlit as st

import ui
import ui.links
import ui.state
import ui.tune
import ui.tune_views
from charrnn.tune.study import PRUNERS, SAMPLERS

ui.via_entry(__file__)
ui.state.follow_switch()  # "Generate from it" and "Train it fully" switch pages from a callback
ui.links.restore_and_sync("tune")  # a shared link's study, and the address kept in step
ui.tune.init()

st.title("Tune")
ui.links.link_to_this_view("tune")
st.write(
    "Search the hyperparameters: each trial trains a model for a few epochs and is judged on the held-out "
    "perplexity (the text after the training slice), beside a 5-gram counting model's on the same text. The "
    "pruner ends a trial early when it does worse than earlier trials at the same epoch. Every trial is a run "
    "(Runs page). What does not vary comes from the Train page's settings; the text from the Data page. "
    "Varying optimizer takes a learning-rate range per optimizer: lr_sgd and lr_adam instead of lr."
)
job = ui.tune.tune_job()
running = job.running()
errors = ui.tune.errors()

with st.expander("Search settings", expanded=not running, icon=":material/tune:"):
    for name in ui.tune.SPECS:
        c = st.columns([1, 3])
        c[0].checkbox(f"vary {name}", disabled=running, **ui.bound(f"tune_vary_{name}", "tune"))
        c[1].text_input(
            f"{name}: low:high, low:high:log or a|b|c",
            disabled=running or not st.session_state[f"tune_vary_{name}"],
            label_visibility="collapsed",
            **ui.bound(f"tune_spec_{name}", "tune"),
        )
        if name in errors:
            c[1].error(ui.literal(errors[name]))
    if "space" in errors:
        ui.error(errors["space"])
    st.caption(ui.literal(ui.tune.fixed_text()))
    c = st.columns(4)
    c[0].number_input("trials", min_value=1, disabled=running, **ui.bound("tune_trials", "tune"))
    c[1].number_input("epochs per trial", min_value=1, disabled=running, **ui.bound("tune_epochs", "tune"))
    c[2].selectbox("sampler", SAMPLERS, disabled=running, **ui.bound("tune_sampler", "tune"))
    c[3].selectbox("pruner", PRUNERS, disabled=running, **ui.bound("tune_pruner", "tune"))
    for field in ("trials", "epochs", "sampler", "pruner"):
        if field in errors:
            ui.error(errors[field])
    if ui.tune.pruning_text():
        st.warning(ui.literal(ui.tune.pruning_text()))
    st.text_input(
        "study name (letters, digits, spaces, - _ .)", max_chars=100, disabled=running, **ui.bound("tune_name", "tune")
    )
    if "study" in errors:
        ui.error(errors["study"])
    st.caption(ui.literal(f"Studies are stored in {ui.tune.storage_text()} (set CHARRNN_TUNE_STORAGE to share one)."))
    if "storage" in errors:
        ui.error(errors["storage"])
c = st.columns([1, 1, 4])
c[0].button("Start", type="primary", on_click=ui.tune.start_tune, disabled=running, key="tune_start")
c[1].button("Stop", on_click=ui.tune.stop_tune, disabled=not running, key="tune_stop")
for field in ("start", "val_tokens"):
    if field in errors:
        ui.error(errors[field])
if job.message and not running:
    ui.error(job.message)

ui.tune_views.study_view(running)
