"""Links that reproduce a view: a page's settings live in the address's query parameters.

Every page calls `restore_and_sync(page)` first. On the page's first run in a session (a shared link
opened in a fresh browser, a reload) the parameters in the address are checked and copied into the
settings; a bad one is left out with a warning naming it, never an exception. On every run the address
is rewritten from the settings, with only those that differ from the defaults, so links stay short.
An uploaded text is never part of a link (it lives in the session that uploaded it).
"""

from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlencode

import streamlit as st

from charrnn.generate import MAX_PREDS, MAX_PREFIX
from charrnn.runs import demo
from charrnn.runs.ownership import check_id
from charrnn.runs.store import RunStore
from charrnn.train import TrainConfig
from ui.demo import capped
from ui.display import literal
from ui.state import DEFAULTS, HP_FIELDS
from ui.training import device_choices
from ui.visitor import visitor_key

STREAMLIT_PARAMS = {"embed", "embed_options"}  # Streamlit's own; never ours to judge
PRIVATE_PARAMS = {"key"}  # the visitor's private link (ui.visitor reads it); never written back


def converted(kind: type, text: str):
    """`kind(text)` for a number in a link, or ValueError saying what the value must be (not Python's words)."""
    try:
        return kind(text)
    except ValueError:
        what = "a whole number, e.g. 0 or 42" if kind is int else "a number, e.g. 0.5 or 1e-3"
        raise ValueError(f"must be {what}") from None


@dataclass(frozen=True)
class Param:
    name: str  # in the address
    setting: str  # the session-state key it restores
    parse: Callable[[str], object]  # the value, or ValueError saying what is wrong


def hp_param(field: str) -> Param:
    """A TrainConfig field, checked by TrainConfig itself (its message names the field and the range)."""
    kind = type(DEFAULTS[f"hp_{field}"])

    def parse(text: str):
        if field == "device":
            if text not in device_choices():
                raise ValueError(f"must be one of {', '.join(device_choices())} on this machine")
            return text
        value = converted(kind, text)
        TrainConfig(**{field: value}).validate()
        # In demo mode a link cannot bring a value above a cap (max_tokens 0, the whole text, is judged
        # at Start, where the text's length is known).
        problem = demo.over_cap(field, value) if capped() and field in demo.CONFIG_CAPS else None
        if problem:
            raise ValueError(problem)
        return value

    return Param(field, f"hp_{field}", parse)


def choice(*options: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in options:
            raise ValueError(f"must be one of {', '.join(options)}")
        return text

    return parse


def whole(low: int, high: int | None = None) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < low or (high is not None and value > high):
            raise ValueError(f"must be a whole number from {low:,}" + (f" to {high:,}" if high else " up"))
        return value

    return parse


def number(low: float, high: float) -> Callable[[str], float]:
    def parse(text: str) -> float:
        value = converted(float, text)
        if not low <= value <= high:
            raise ValueError(f"must be a number from {low:g} to {high:g}")
        return value

    return parse


def text(limit: int) -> Callable[[str], str]:
    def parse(value: str) -> str:
        if not value or len(value) > limit:
            raise ValueError(f"must be 1 to {limit:,} characters, not {len(value):,}")
        return value

    return parse


def stored_run(value: str) -> str:
    run_id = check_id(value)  # ValueError: "no run with id ..."
    RunStore().run(run_id)
    return run_id


def stored_runs(value: str) -> list[str]:
    return [stored_run(v) for v in value.split(",") if v]


def stored_study(value: str) -> str:
    """A study of the Tune page's storage (its name checked before the storage is asked)."""
    from charrnn.tune.storage import check_study_name, study_names  # optuna: only when a link names a study
    from ui.tune import storage

    check_study_name(value)  # FieldError (a ValueError) saying what a study name is
    if value not in study_names(storage()):
        raise ValueError(f"no study named {value!r} in the study storage; the Tune page lists them")
    return value


DECODINGS = {"greedy": "greedy (the book)", "sampling": "sampling"}
PAGE_PARAMS = {
    "train": [hp_param(f) for f in HP_FIELDS],
    "data": [
        Param("source", "corpus_source", choice("time_machine", "fallback")),
        Param("mode", "corpus_mode", choice("book", "raw")),
        *(hp_param(f) for f in ("max_tokens", "batch_size", "num_steps", "sampling", "seed")),
        Param("minibatch", "data_batch_no", whole(1)),
    ],
    "generate": [
        Param("run", "gen_run", stored_run),
        Param("epoch", "gen_epoch", whole(0)),
        Param("prefix", "gen_prefix", text(MAX_PREFIX)),
        Param("length", "gen_num", whole(0, MAX_PREDS)),
        Param("decoding", "gen_decoding", lambda v: DECODINGS[choice(*DECODINGS)(v)]),
        Param("temperature", "gen_temperature", number(0.05, 3.0)),
        Param("top_k", "gen_top_k", whole(0)),
        Param("seed", "gen_seed", whole(0, 2**63 - 1)),
    ],
    "runs": [Param("runs", "runs_selected", stored_runs)],
    "inside": [Param("run", "gen_run", stored_run), Param("epoch", "gen_epoch", whole(0))],
    "tune": [Param("study", "tune_study", stored_study)],
}
TO_ADDRESS = {"gen_decoding": {v: k for k, v in DECODINGS.items()}.get, "runs_selected": ",".join}


def restore(page: str) -> list[str]:
    """Copy the address's parameters into the settings; warnings for what was left out."""
    params = {p.name: p for p in PAGE_PARAMS.get(page, [])}
    warnings = []
    for name, value in st.query_params.to_dict().items():
        if name in STREAMLIT_PARAMS or name in PRIVATE_PARAMS:
            continue
        if name not in params:
            warnings.append(f"the link's parameter {name!r} is not one of this page's; it was left out.")
            continue
        try:
            st.session_state[params[name].setting] = params[name].parse(value)
        except (ValueError, TypeError, KeyError) as e:
            warnings.append(f"the link's {name}={value[:40]!r} was left out: {e}")
    if "run" in params and "run" in st.query_params and not any(w.startswith("the link's run") for w in warnings):
        st.session_state["gen_model"] = "saved run"
        if "epoch" not in st.query_params:  # the run's last checkpoint, pinned when the page picks it
            st.session_state["gen_epoch"] = None
    for p in params.values():  # a restored setting reseeds its widget (see ui.state.bound)
        st.session_state.pop(f"{page}_{p.setting}", None)
    return warnings


def address_params(page: str) -> dict[str, str]:
    """The page's settings that differ from their defaults, as the address writes them."""
    out = {}
    for p in PAGE_PARAMS.get(page, []):
        value = st.session_state.get(p.setting, DEFAULTS.get(p.setting))
        if value is None or value == DEFAULTS.get(p.setting, 1 if p.setting == "data_batch_no" else None):
            continue  # None is "nothing chosen", never a value: a link with "None" in it could not be opened
        if p.setting in ("gen_run", "gen_epoch") and st.session_state.get("gen_model") != "saved run":
            continue
        if p.setting == "corpus_source" and value == "upload":
            continue  # an uploaded text is not in a link
        out[p.name] = TO_ADDRESS.get(p.setting, str)(value)
    return out


def restore_and_sync(page: str):
    """First call of a page after `via_entry`: restore from the address once, then keep it in step."""
    visitor_key()  # a private link's key is read before the address drops it
    done = st.session_state.setdefault("_links_restored", set())
    if page not in done:
        done.add(page)
        for warning in restore(page):
            st.warning(literal(f"Link: {warning}"))
    sync(page)


def sync(page: str):
    """Rewrite the address from the page's settings (again, after the page changed one, e.g. a pinned model)."""
    params = address_params(page)
    if params != st.query_params.to_dict():
        st.query_params.from_dict(params)


def link_to_this_view(page: str):
    """A popover in the sidebar with the full address of this view, ready to copy."""
    params = address_params(page)
    base = (st.context.url or "").split("?")[0]
    with st.sidebar.popover("Link to this view", icon=":material/link:"):
        st.code(f"{base}?{urlencode(params)}" if params else base or "(this page's address)", language=None)
        if st.session_state.get("corpus_source") == "upload" and page in ("data", "train"):
            st.caption("The uploaded text is not part of a link: it opens with The Time Machine.")
