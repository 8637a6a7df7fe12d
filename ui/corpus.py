"""The text the app trains on: The Time Machine (downloaded once), the offline fallback or an upload."""

import streamlit as st

from charrnn.batches import SeqDataLoader
from charrnn.data import CorpusError, fallback_text, find_time_machine, load_corpus
from charrnn.tune.study import YARDSTICK_ORDER, yardstick
from ui.display import error


@st.cache_data(show_spinner="Loading the text...", max_entries=16)
def load_text(source: str, mode: str, max_tokens: int, data: bytes | None, name: str | None = None):
    return load_corpus(data if source == "upload" else source, mode=mode, max_tokens=max_tokens, name=name)


def corpus_status() -> tuple[str, str]:
    """(kind, text) about The Time Machine: kind is 'ok', 'missing' or 'error'."""
    try:
        path = find_time_machine()
    except CorpusError as e:
        return "error", str(e)
    if path is not None:
        how = "downloaded" if st.session_state.get("tm_downloaded") else "cached"
        return "ok", f"The Time Machine is {how}: {path}"
    if st.session_state.get("tm_error"):
        fb = fallback_text()
        alt = f"the offline fallback text ({fb[0]})" if fb else "no offline fallback text on this machine"
        return "missing", (
            f"Offline: {st.session_state['tm_error']} Meanwhile, upload a .txt on the Data page or pick {alt} there."
        )
    return "missing", "The Time Machine is not on this machine yet; it is downloaded (SHA-1 checked) on first use."


def load_chosen_corpus(max_tokens: int):
    """The corpus chosen on the Data page (source and mode in session state); raises CorpusError."""
    source, mode = st.session_state["corpus_source"], st.session_state["corpus_mode"]
    data, name = None, None
    if source == "upload":
        upload = st.session_state.get("upload") or {}
        data, name = upload.get("data"), upload.get("name")
        if data is None:
            raise CorpusError("no text uploaded yet; upload a .txt file on the Data page, or pick another source.")
    if source == "time_machine" and st.session_state.get("tm_error") and find_time_machine() is None:
        raise CorpusError(corpus_status()[1])  # do not retry a failed download on every rerun
    download = source == "time_machine" and find_time_machine() is None
    try:
        corpus = load_text(source, mode, int(max_tokens), data, name)
    except CorpusError as e:
        if source == "time_machine":
            st.session_state["tm_error"] = str(e)
        raise
    if download:
        st.session_state["tm_downloaded"] = True
    return corpus


def current_corpus():
    """The chosen corpus cut to the form's max_tokens, or None after an st.error that says what to do."""
    try:
        return load_chosen_corpus(st.session_state["hp_max_tokens"])
    except CorpusError as e:
        error(f"Corpus: {e}")
        return None


def corpus_for_run(run: dict):
    """The text a stored run trained on, reloaded and checked by its SHA-1; raises CorpusError saying what to do."""
    fp = run["corpus"]
    if fp["source"] in ("time_machine", "fallback"):
        corpus = load_text(fp["source"], fp["mode"], int(fp["max_tokens"] or 0), None)
    else:
        upload = st.session_state.get("upload") or {}
        if upload.get("data") is None:
            raise CorpusError(
                f"the run trained on {fp['name']}; upload that file on the Data page (source: Uploaded .txt) first."
            )
        corpus = load_text("upload", fp["mode"], int(fp["max_tokens"] or 0), upload["data"], upload.get("name"))
    if corpus.sha1 != fp["sha1"]:
        raise CorpusError(f"the text uploaded on the Data page is not {fp['name']}, which the run trained on.")
    return corpus


def download_time_machine():
    """on_click callback of the Download buttons; a failure is kept and shown as the corpus status."""
    st.session_state.pop("tm_error", None)
    try:
        load_corpus("time_machine", max_tokens=1)
        st.session_state["tm_downloaded"] = True
    except CorpusError as e:
        st.session_state["tm_error"] = str(e)


def num_minibatches(corpus: list[int], b: int, t: int, sampling: str, seed: int) -> int:
    """Minibatches in the first epoch; ValueError naming the field when the text is too short."""
    return len(SeqDataLoader(corpus, b, t, sampling, seed=seed))


def nth_minibatch(corpus: list[int], b: int, t: int, sampling: str, seed: int, k: int):
    """(X, Y) of the k-th (1-based) minibatch of the first epoch."""
    for i, (X, Y) in enumerate(SeqDataLoader(corpus, b, t, sampling, seed=seed), 1):
        if i == k:
            return X.tolist(), Y.tolist()
    raise ValueError(f"minibatch must be between 1 and {i}, not {k}")


@st.cache_data(max_entries=32, show_spinner="Counting 5-grams...")
def _counting(sha1: str, mode: str, max_tokens: int, val_tokens: int, _text: dict) -> float | None:
    """The 5-gram's figure per (text, split); `_text` (not part of the key) says where the text is."""
    try:
        whole = corpus_for_run({"corpus": {**_text, "max_tokens": 0}})  # each split is cut from the whole text
    except (CorpusError, KeyError, TypeError, ValueError):
        return None
    return yardstick(whole, max_tokens, val_tokens)


def yardstick_for(text: dict | None, val_tokens: int | None) -> float | None:
    """The 5-gram (Kneser-Ney) model's held-out perplexity on the split a run of `text` (a run's corpus
    fingerprint: source, name, mode, sha1, max_tokens) and `val_tokens` is judged on: the yardstick every
    held-out chart draws. None when there is no held-out text, or the text is not on this machine (The Time
    Machine not downloaded yet, another session's upload): a chart never downloads or waits for it."""
    if not isinstance(text, dict) or not isinstance(val_tokens, int) or val_tokens <= 0 or not text.get("sha1"):
        return None
    source = text.get("source")
    if source == "time_machine" and find_time_machine() is None:
        return None
    if source not in ("time_machine", "fallback") and (st.session_state.get("upload") or {}).get("data") is None:
        return None  # an upload is keyed by its SHA-1 once it is here; never cache its absence
    max_tokens = text.get("max_tokens") or 0  # None and 0: the whole text
    if not isinstance(max_tokens, int):
        return None
    return _counting(text["sha1"], str(text.get("mode")), max_tokens, val_tokens, text)


def counting_label(value: float) -> str:
    """How a chart labels the yardstick's line."""
    return f"{YARDSTICK_ORDER}-gram (counting): {value:.2f}"


def yardsticks_for(runs: list[dict]) -> tuple[tuple[str, float], ...]:
    """(label, value) of the yardstick for each text and split that `runs` (stored runs) were judged on: one
    line on an overlay of runs of one recipe, one per text and split otherwise."""
    splits = {}
    for run in runs:
        text, val_tokens = run.get("corpus") or {}, (run.get("config") or {}).get("val_tokens")
        splits.setdefault((text.get("sha1"), text.get("mode"), text.get("max_tokens"), val_tokens), (text, val_tokens))
    found = []
    for text, val_tokens in splits.values():
        value = yardstick_for(text, val_tokens)
        if value is not None:
            where = f" ({text.get('name')}, {text.get('max_tokens') or 'all'} chars, {val_tokens} held out)"
            found.append((counting_label(value) + (where if len(splits) > 1 else ""), value))
    return tuple(found)


def yardstick_of(text: dict | None, config) -> tuple[str, float] | None:
    """The yardstick's (label, value) for one run's text and settings (a TrainConfig), None without one."""
    value = yardstick_for(text, getattr(config, "val_tokens", None))
    return None if value is None else (counting_label(value), value)
