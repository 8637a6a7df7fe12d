"""Train: the book's recipe, or your settings, on a background worker with a live perplexity chart."""

import sys

import pandas as pd
import streamlit as st

import ui
import ui.corpus
import ui.links
import ui.runs
import ui.state
import ui.training
import ui.watch
from charrnn.baseline import MAX_ORDER
from charrnn.models import CELLS, KINDS, MAX_DROPOUT, MAX_LAYERS
from charrnn.train import MAX_HIDDENS, OPTIMIZERS, SCHEDULES, STATES

ui.via_entry(__file__)
ui.links.restore_and_sync("train")  # a shared link's settings, and the address kept in step
ui.state.follow_switch()  # "Generate from it" goes on to the Generate page

st.title("Train")
ui.links.link_to_this_view("train")
run = ui.runner()
snap = run.snapshot()
st.caption(ui.literal(ui.training.settings_text()))

# Open until the visitor's first run; Start folds it away (ui.training.start_training) so that the run's
# chart and figures are in view at 1366x768, and the run's end leaves it as it is: nothing moves then.
st.session_state.setdefault("train_settings", snap.config is None)
with st.expander(ui.training.settings_label(snap), key="train_settings", on_change="rerun", icon=":material/tune:"):
    with st.container(border=True, key="train_form"):  # not a form: every change reaches the address at once
        ui.training.preset_picker()
        c = st.columns(5)
        # The ranges admit every value the CLI accepts (TrainConfig.validate refuses the rest at Start, naming
        # the field), so "Train again" never changes a stored run's settings to fit a widget.
        c[0].number_input("num_hiddens", min_value=1, max_value=MAX_HIDDENS, **ui.bound("hp_num_hiddens", "train"))
        c[1].number_input("num_steps", min_value=1, **ui.bound("hp_num_steps", "train"))
        c[2].number_input("batch_size", min_value=1, **ui.bound("hp_batch_size", "train"))
        c[3].number_input("lr", min_value=sys.float_info.min, format="%g", **ui.bound("hp_lr", "train"))
        c[4].number_input("num_epochs", min_value=1, **ui.bound("hp_num_epochs", "train"))
        c = st.columns(5)
        c[0].number_input("clip theta (0 = off)", min_value=0.0, format="%g", **ui.bound("hp_clip", "train"))
        c[1].selectbox("sampling", ["sequential", "random"], **ui.bound("hp_sampling", "train"))
        c[2].number_input("max_tokens (0 = all)", min_value=0, step=1000, **ui.bound("hp_max_tokens", "train"))
        c[3].number_input("seed", step=1, **ui.bound("hp_seed", "train"))
        c[4].selectbox("device", ui.device_choices(), **ui.bound("hp_device", "train"))
        c = st.columns(5)  # the model (8.5-8.6, 9.1-9.3)
        c[0].selectbox(
            "model",
            KINDS,
            help="scratch: the book's explicit parameters (W_xh, W_hh, b_h, ..., W_hq, b_q). "
            "concise: torch.nn's RNN, GRU or LSTM with a Linear head (8.6, 9.1-9.3).",
            **ui.bound("hp_model", "train"),
        )
        c[1].selectbox(
            "cell",
            CELLS,
            help="rnn: 8.4-8.6's tanh RNN. gru: 9.1's gated recurrent unit. lstm: 9.2's long short-term memory.",
            **ui.bound("hp_cell", "train"),
        )
        c[2].number_input(
            "num_layers",
            min_value=1,
            max_value=MAX_LAYERS,
            help="Stacked recurrent layers (9.3): each reads the hidden states of the one below. The book's deep "
            "LSTM has 2.",
            **ui.bound("hp_num_layers", "train"),
        )
        c[3].number_input(
            "dropout",
            min_value=0.0,
            max_value=MAX_DROPOUT,
            step=0.05,
            format="%g",
            help="The share of activations dropped between layers and before the head, in training only "
            "(0: none, the book's).",
            **ui.bound("hp_dropout", "train"),
        )
        c[4].selectbox(
            "state between minibatches",
            STATES,
            help="carry: the recipe. reset: a zero state before every minibatch (the book's second run; "
            "random sampling always resets).",
            **ui.bound("hp_state", "train"),
        )
        note = ui.training.model_note(st.session_state["hp_model"], st.session_state["hp_cell"])
        if note:
            st.caption(note)
        c = st.columns(5)
        c[0].number_input(
            "checkpoint every N epochs",
            min_value=1,
            help="Also at the end. A stopped run resumes from its last checkpoint (Runs page).",
            **ui.bound("checkpoint_every", "train"),
        )
        c[1].number_input(
            "held-out chars (0 = none)",
            min_value=0,
            step=500,
            help="The characters after the training text, never trained on (the last 10% when there is no room).",
            **ui.bound("hp_val_tokens", "train"),
        )
        c[2].number_input(
            "evaluate every N epochs",
            min_value=0.01,
            step=1.0,
            format="%g",
            help="Held-out perplexity every N epochs and at the last; or 1/k of an epoch (0.5, 0.25, 0.1) for k "
            "evaluations in each (the best checkpoint and patience go by those at epoch ends).",
            **ui.bound("hp_eval_every", "train"),
        )
        c[3].number_input(
            "patience (0 = off)",
            min_value=0,
            help="Stop after this many evaluations in a row without a new best held-out figure.",
            **ui.bound("hp_patience", "train"),
        )
        c = st.columns(5)  # the update
        c[0].selectbox(
            "optimizer",
            OPTIMIZERS,
            help="sgd: the book's plain update. adam: AdamW (Adam with decoupled weight decay).",
            **ui.bound("hp_optimizer", "train"),
        )
        c[1].number_input(
            "weight decay",
            min_value=0.0,
            format="%g",
            help="adam: AdamW's decoupled decay. sgd: L2, added to the gradient after clipping.",
            **ui.bound("hp_weight_decay", "train"),
        )
        c[2].number_input(
            "weight drop (W_hh)",
            min_value=0.0,
            max_value=MAX_DROPOUT,
            step=0.05,
            format="%g",
            help="DropConnect on the recurrent weights: one mask per minibatch, in training only (concise model).",
            **ui.bound("hp_weight_drop", "train"),
        )
        c[3].selectbox(
            "lr schedule",
            SCHEDULES,
            help="constant: the book's. cosine: lr falls by minibatch from lr to 0 at the last epoch.",
            **ui.bound("hp_lr_schedule", "train"),
        )
        c = st.columns([1, 1, 3], vertical_alignment="bottom")  # the mix with counting
        c[0].number_input(
            "n-gram order (0 = off)",
            min_value=0,
            max_value=MAX_ORDER,
            help="Mix the model's predictions with the Kneser-Ney n-gram of its training text (counted, never "
            "trained): the network trains alone, its predictions are mixed wherever it predicts.",
            **ui.bound("hp_ngram_order", "train"),
        )
        c[1].number_input(
            "n-gram share",
            min_value=0.0,
            max_value=0.99,
            step=0.05,
            format="%g",
            help="The n-gram's weight in the mix: (1 - share) x network + share x n-gram.",
            **ui.bound("hp_ngram_weight", "train"),
        )
        if st.session_state["hp_ngram_order"] and st.session_state["hp_ngram_weight"]:
            c[2].caption(ui.training.mix_note(st.session_state["hp_ngram_order"], st.session_state["hp_ngram_weight"]))
        ui.training.start_button(disabled=snap.running)
c = st.columns([1, 1.4, 3], vertical_alignment="center")
c[0].button(
    "Cancel" if snap.status == "queued" else "Stop",
    on_click=ui.stop_training,
    disabled=not snap.running,
    key="train_stop",
)
ended = snap.run_id if snap.run_id and not snap.running and snap.model is not None else None
c[1].button(  # always drawn (off until the run has ended with a model): the end moves nothing
    "Generate from it",
    on_click=ui.runs.generate_from,
    args=("saved run", ended),
    disabled=ended is None,
    help="The Generate page on this run's last checkpoint.",
    key="train_generate",
)
c[2].toggle("Pause the live view (to zoom the chart)", **ui.bound("live_paused", "train"))
if st.session_state.get("train_notice"):
    st.warning(ui.literal(st.session_state.pop("train_notice")))  # shown once, after "Train again"
if st.session_state.get("train_error"):
    ui.error(st.session_state["train_error"])
if snap.status in ("failed", "busy", "diverged"):
    ui.error(snap.message)

# A queued run is followed even with the live view paused: its start must redraw the page.
live = snap.status == "queued" or (snap.running and not st.session_state["live_paused"])


@st.fragment(run_every=1.0 if live else None)
def live_view():
    s = run.snapshot()
    if live and s.status != snap.status:
        st.rerun()  # it started (after the queue) or ended: one full rerun redraws the controls
    if s.status == "queued":
        st.info(ui.training.queue_text(run))
        return
    if s.status in ("idle", "cancelled") or s.config is None:
        st.info("No run of yours yet. Press Start.")
        return
    ui.show_run(s.history, s.config, s.status, "ppl", s.summary, s.run_id, ui.corpus.yardstick_of(s.corpus, s.config))


with st.container(key="train_own"):
    live_view()
ui.watch.elsewhere("train")  # below the visitor's own run: it never pushes that run's chart down
if snap.history and not snap.running:  # outside the live view: a grid redrawn every second costs the run CPU
    with st.expander("Every epoch"):
        table = pd.DataFrame(
            [(x.epoch, x.perplexity, x.tokens_per_sec, x.grad_norm) for x in snap.history],
            columns=["epoch", "perplexity", "tokens/s", "grad norm"],
        )
        st.dataframe(table, hide_index=True, key="history_table")
if snap.model is not None:
    st.download_button(
        "Download the checkpoint",
        data=ui.checkpoint_bytes(snap),
        file_name="charrnn.pt",
        mime="application/octet-stream",
        key="train_download",
    )
