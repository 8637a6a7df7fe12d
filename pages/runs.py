"""Runs: every recorded run (this app's and the CLI's), compared side by side, managed, resumed."""

import streamlit as st

import ui
import ui.corpus
import ui.demo
import ui.links
import ui.models
import ui.runs
import ui.state
import ui.watch
from charrnn.runs.runner import MAX_NAME

ui.via_entry(__file__)
ui.links.restore_and_sync("runs")  # a shared link's settings, and the address kept in step

ui.state.follow_switch()  # Resume, Train again and Generate from it go on to another page
st.title("Runs")
ui.links.link_to_this_view("runs")
st.caption("Every training run is recorded with its curve and checkpoints; `python -m charrnn runs` lists the same.")
if st.session_state.get("runs_error"):
    ui.error(st.session_state.pop("runs_error"))  # shown once, after the action that failed
runs = ui.runs.only_mine(ui.runs.stored_runs())  # None (said in one line) when the store cannot be opened
by_id = {r["id"]: r for r in runs or ()}
labels = ui.runs.run_labels(runs or [])
if runs == []:
    st.info(ui.runs.no_runs_text())
elif runs:
    ui.runs.runs_table(runs)  # live while a run trains

    ui.state.keep_valid("runs_selected", "runs", list(by_id), many=True)
    st.multiselect(
        "Compare runs", list(by_id), format_func=labels.get, **ui.bound("runs_selected", "runs", resend=True)
    )
    chosen = [by_id[i] for i in st.session_state["runs_selected"]]
    if chosen:
        metric = st.radio(
            "Overlay", list(ui.views.METRICS), format_func=ui.views.METRICS.get, horizontal=True, key="runs_metric"
        )
        fig = ui.views.runs_figure(chosen, labels, metric, ui.corpus.yardsticks_for(chosen))
        st.plotly_chart(fig, key="runs_ppl", config={"displaylogo": False})
        st.caption("Their settings side by side; highlighted rows differ.")
        st.dataframe(ui.views.config_table(chosen, labels), height="content", key="runs_configs")

    st.header("One run")
    ui.state.keep_valid("runs_one", "runs", list(by_id))
    if "runs_one" in st.session_state:  # sent again: a rename changes its label (see ui.state.bound's resend)
        st.session_state["runs_one"] = st.session_state["runs_one"]
    run_id = st.selectbox("Run", list(by_id), format_func=labels.get, key="runs_one")
    run = by_id[run_id]
    st.text(f"{run['status']}{': ' + run['reason'] if run['reason'] else ''}, {run['epochs']} epochs, id {run_id}")
    st.text(ui.views.run_model_text(run))
    busy = ui.runner().snapshot().running
    mine = ui.demo.may_change(run_id)  # in demo mode or signed in, only the visitor's own (an admin: any)
    if run["status"] == "running":
        c = st.columns([1, 5], vertical_alignment="center")
        c[0].button(
            "Stop",
            on_click=ui.runs.stop_run,
            args=(run_id,),
            disabled=not mine or bool(run.get("stop_asked")),
            help=ui.demo.read_only_help(
                run_id,
                f"Asks the process training it ({run['host']}, any machine that shares this run store) to stop at "
                "its next minibatch, within seconds; it stays resumable.",
            ),
            key="runs_stop",
        )
        if run.get("stop_asked"):
            c[1].caption("Stop asked: it stops within seconds.")
        if st.toggle("Follow it live (read-only)", key="runs_follow"):
            ui.watch.watch(run_id, "runs")
    if not mine:
        st.caption(ui.demo.read_only_help(run_id))
    download = ui.runs.checkpoint_download(run)
    c = st.columns([3, 1], vertical_alignment="bottom")
    c[0].text_input("Name", value=run["name"], max_chars=MAX_NAME, disabled=not mine, key=f"runs_name_{run_id}")
    c[1].button(
        "Rename",
        on_click=ui.runs.rename_run,
        args=(run_id,),
        disabled=not mine,
        help=ui.demo.read_only_help(run_id),
        key="runs_rename",
    )
    c = st.columns([1, 2.2, 1.4, 1.8, 1])
    c[0].button(
        "Resume",
        on_click=ui.runs.resume_run,
        args=(run_id,),
        disabled=run["status"] not in ui.runs.RESUMABLE or download is None or busy or not mine,
        help=ui.demo.read_only_help(
            run_id, "A stopped or interrupted run continues from its last checkpoint, on the Train page."
        ),
        key="runs_resume",
    )
    c[1].button("Train again with these settings", on_click=ui.runs.train_again, args=(run_id,), key="runs_again")
    c[2].button("Generate from it", on_click=ui.runs.generate_from, args=("saved run", run_id), key="runs_generate")
    if download is None:
        c[3].caption("no checkpoint yet")
    else:
        c[3].download_button("Download checkpoint", download[0], download[1], help=download[2], key="runs_download")
    c[4].button(
        "Delete...",
        on_click=ui.runs.ask_delete,
        args=(run_id,),
        disabled=run["status"] == "running" or not mine,
        help=ui.demo.read_only_help(run_id),
        key="runs_del",
    )
    if st.session_state.get("runs_confirm_delete") == run_id:
        st.warning(ui.literal(f"Delete {run['name']}, its curve and its checkpoint files? This cannot be undone."))
        c = st.columns([1, 1, 4])
        c[0].button("Yes, delete", type="primary", on_click=ui.runs.delete_run, args=(run_id,), key="runs_del_yes")
        c[1].button("Cancel", on_click=ui.runs.ask_delete, args=(None,), key="runs_del_no")

st.header("Generate from a checkpoint file")
file = st.file_uploader(
    "A charrnn checkpoint (.pt), e.g. one downloaded here",
    type=["pt"],
    max_upload_size=ui.demo.upload_mb("checkpoint"),
    help="Read in memory for generating; never written to the run store or to disk.",
    key="runs_upload",
)
if file is not None:
    try:
        model, vocab = ui.models.load_checkpoint_upload(file)
    except ValueError as e:  # CheckpointError, the demo's upload cap, or a device that is not there
        ui.error(f"Checkpoint file: {e}")
        st.stop()
    st.text(f"{file.name}: {ui.views.model_text(model.config)}, a vocab of {len(vocab)} tokens")
    st.button("Generate from it", on_click=ui.runs.generate_from, args=("checkpoint file",), key="runs_gen_upload")
