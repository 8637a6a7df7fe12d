"""Streamlit glue shared by the pages; the core (`charrnn`) never imports streamlit.

One module per job, and this face re-exports what every page calls:
- `ui.state`: settings in session state, widgets bound to them, page switches;
- `ui.corpus`: the text (The Time Machine, the fallback, an upload) and its minibatches;
- `ui.visitor`: who the visitor is (a key in a cookie or a private link) and the visitor's runner;
- `ui.training`: the device lock, the Start/Stop callbacks, the Start button, the sidebar;
- `ui.display`: escaped messages, a run's progress and chart, a continuation;
- `ui.views`: figures and tables from plain data (no session state);
- `ui.runs` (Runs page), `ui.watch` (runs training elsewhere), `ui.models` (the model Generate and Inside
  use, pinned), `ui.generating` (Generate's results and what changed since).
"""

from ui import views
from ui.corpus import corpus_status, current_corpus, download_time_machine, nth_minibatch, num_minibatches
from ui.display import error, literal, show_continuation, show_run
from ui.state import SOURCES, bound, entry_done, init_state, via_entry
from ui.training import (
    checkpoint_bytes,
    device_choices,
    device_text,
    quick_train,
    runner,
    sidebar,
    stop_training,
    submit_training,
    wait_for_run,
)

__all__ = [
    "SOURCES",
    "bound",
    "checkpoint_bytes",
    "corpus_status",
    "current_corpus",
    "device_choices",
    "device_text",
    "download_time_machine",
    "entry_done",
    "error",
    "init_state",
    "literal",
    "nth_minibatch",
    "num_minibatches",
    "quick_train",
    "runner",
    "show_continuation",
    "show_run",
    "sidebar",
    "stop_training",
    "submit_training",
    "via_entry",
    "views",
    "wait_for_run",
]
