"""Demo mode (CHARRNN_DEMO=1): the caps of a public server, and each browser session changing only the
runs it started. charrnn.runs.demo directly (table-driven), then the app through AppTest.

Runs "of another session" are made by the real core (`train_recorded`, a few tiny epochs), as the CLI
or another tab makes them; a fresh AppTest is the visitor."""

import re
import tempfile
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest
from support import APP, app, generate, ok, record_run, wait

from charrnn.data import load_corpus
from charrnn.runs import demo
from charrnn.runs.store import RunStore
from charrnn.train import TrainConfig

TINY = dict(num_epochs=2, num_hiddens=16, max_tokens=2000, batch_size=4, num_steps=8, device="cpu")
MIB = 1 << 20


@pytest.fixture
def home(tmp_path, monkeypatch, fresh_caches):
    """An empty run store and study storage per test (fresh Streamlit caches: AppTests share them)."""
    monkeypatch.setenv("CHARRNN_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("CHARRNN_TUNE_STORAGE", raising=False)
    return RunStore()


@pytest.fixture
def demo_on(monkeypatch, home):
    monkeypatch.setenv("CHARRNN_DEMO", "1")
    return home


@pytest.fixture(scope="module")
def corpus(time_machine_path):
    return load_corpus("time_machine", mode="book", max_tokens=2000, download=False)


def record(corpus, name: str, stop_after: int | None = None, **settings) -> str:
    """A run recorded by the core, as the CLI or another session records one; stopped early if asked."""
    return record_run(corpus, name, TINY, stop_after, **settings)


def shown(elements) -> list[str]:
    """Messages as the user reads them (ui.literal escapes Markdown with backslashes)."""
    return [re.sub(r"\\(.)", r"\1", e.value) for e in elements]


def files(folder: Path) -> set:
    """The files under `folder`; SQLite's own -wal/-shm files come and go with its connections."""
    return {p.relative_to(folder) for p in folder.rglob("*") if p.is_file() and not p.name.endswith(("-wal", "-shm"))}


# ---- charrnn.runs.demo ------------------------------------------------------------------------------

ENV_VALUES = [(None, False), ("", False), ("0", False), ("false", False), (" Off ", False), ("no", False)]
ENV_VALUES += [("1", True), ("yes", True), ("true", True), ("2", True)]  # any other value turns it on: fail safe


@pytest.mark.parametrize(("value", "on"), ENV_VALUES)
def test_demo_mode_is_read_from_the_environment_on_each_call(monkeypatch, value, on):
    if value is None:
        monkeypatch.delenv("CHARRNN_DEMO", raising=False)
    else:
        monkeypatch.setenv("CHARRNN_DEMO", value)
    assert demo.demo_enabled() is on


# (case, settings, text_chars, the messages' beginnings: none when within the caps)
CAPS = [
    ("the book's recipe", TrainConfig(), None, []),
    ("every cap exactly", dict(num_hiddens=512, num_epochs=500, max_tokens=50_000), None, []),
    ("num_hiddens", dict(num_hiddens=513), None, ["num_hiddens: at most 512 in this demo, not 513"]),
    ("epochs", TrainConfig(num_epochs=501), None, ["Epochs (num_epochs): at most 500 in this demo, not 501"]),
    ("max_tokens", dict(max_tokens=50_001), None, ["max_tokens: at most 50,000 in this demo, not 50,001"]),
    ("whole long text", dict(max_tokens=0), 170_580, ["max_tokens: at most 50,000 in this demo, not 0 (the whole"]),
    ("whole text, length unknown", dict(max_tokens=0), None, ["max_tokens: at most 50,000 in this demo, not 0"]),
    ("whole short text", dict(max_tokens=0), 40_000, []),
    ("two at once", dict(num_hiddens=1024, num_epochs=600), None, ["num_hiddens: ", "Epochs (num_epochs): "]),
    ("not a number: left to validate", dict(num_hiddens="lots", num_epochs=True), None, []),
]


@pytest.mark.parametrize(("case", "config", "chars", "starts"), CAPS, ids=[c[0] for c in CAPS])
def test_check_caps_names_each_field_above_its_cap(case, config, chars, starts):
    problems = demo.check_caps(config, chars)
    assert len(problems) == len(starts), problems
    for problem, start in zip(problems, starts, strict=True):
        assert problem.startswith(start) and "\n" not in problem


def test_require_caps_and_uploads_refuse_only_in_demo_mode(monkeypatch):
    big = TrainConfig(num_hiddens=2048, num_epochs=5000, max_tokens=0)
    monkeypatch.delenv("CHARRNN_DEMO", raising=False)
    demo.require_caps(big)  # outside demo mode nothing is capped
    demo.require_upload(20 * MIB, "big.txt")
    monkeypatch.setenv("CHARRNN_DEMO", "1")
    with pytest.raises(ValueError, match=r"^num_hiddens: at most 512 in this demo, not 2,048; lower it"):
        demo.require_caps(big)
    demo.require_upload(MIB, "exactly.txt")
    with pytest.raises(ValueError, match=r"^Upload size: at most 1 MiB in this demo, not 1\.0 MiB \(big\.pt\)"):
        demo.require_upload(MIB + 1, "big.pt")
    assert demo.over_cap("trials", 17).startswith("Trials per study: at most 16 in this demo, not 17")
    assert demo.over_cap("trials", 16) is None


# ---- whose runs: another session's are read-only -------------------------------------------------


def runs_page(run_id: str, at: AppTest | None = None) -> AppTest:
    """The Runs page on one run, in `at`'s session, else in a fresh one (another visitor)."""
    at = at or app()
    at.switch_page("pages/runs.py").run()
    at.selectbox(key="runs_one").set_value(run_id).run()
    return ok(at)


ACTIONS = ("runs_rename", "runs_resume", "runs_del")


def test_another_sessions_run_cannot_be_renamed_deleted_or_resumed(demo_on, corpus):
    run_id = record(corpus, "theirs", stop_after=1, num_epochs=4)  # stopped: Resume would be on for its owner
    before = (demo_on.run(run_id), demo_on.history(run_id), files(demo_on.home))
    at = app()  # the entry file draws the sidebar (AppTest runs a page alone after a switch)
    assert any(c.value.startswith("Demo mode: num_hiddens up to 512") for c in at.sidebar.caption)
    runs_page(run_id, at)
    assert all(at.button(key=k).disabled for k in ACTIONS) and at.text_input(key=f"runs_name_{run_id}").disabled
    assert all("read-only" in at.button(key=k).proto.help for k in ACTIONS)

    # Streamlit drops a forged click on a disabled button; the callbacks refuse by themselves all the same.
    at.session_state["runs_confirm_delete"] = run_id  # as if Delete had asked: its confirmation refuses
    ok(at.run().button(key="runs_del_yes").click().run())
    assert any(m.startswith("Delete: in this demo you can change only") for m in shown(at.error)), shown(at.error)
    called = ok(AppTest.from_function(call_callbacks, args=(run_id,), default_timeout=30).run())
    assert [t.value for t in called.text] == [
        f"{action}: in this demo you can change only your own runs (those this browser started, or your link's); "
        "this one is read-only (you can still watch it, generate from it or train again with its settings)."
        for action in ("Rename", "Resume", "Delete", "Delete")
    ]
    assert "runs_confirm_delete" not in called.session_state or called.session_state["runs_confirm_delete"] is None
    assert (demo_on.run(run_id), demo_on.history(run_id), files(demo_on.home)) == before


def call_callbacks(run_id: str):
    """A script (a session of its own) calling the Runs page's callbacks directly, as a forged message
    would: each writes why it refused to `runs_error`, shown here as text."""
    import streamlit as st

    import ui
    import ui.runs

    ui.init_state()
    st.session_state[f"runs_name_{run_id}"] = "mine now"
    for callback in (ui.runs.rename_run, ui.runs.resume_run, ui.runs.ask_delete, ui.runs.delete_run):
        callback(run_id)
        st.text(st.session_state.pop("runs_error", ""))


def test_a_run_this_session_started_can_be_renamed_resumed_and_deleted(demo_on, time_machine_path):
    at = app()
    for key, value in {**TINY, "num_epochs": 400}.items():
        at.session_state[f"hp_{key}"] = value
    at.switch_page("pages/train.py").run()
    ok(at.button(key="train_start").click().run())
    wait(at, lambda: any(r["epochs"] >= 1 for r in demo_on.runs()), "the first epoch")
    ok(at.button(key="train_stop").click().run())
    wait(at, lambda: not at.button(key="train_start").disabled, "the stop")
    (run,) = demo_on.runs()
    assert run["status"] == "stopped"

    runs_page(run["id"], at)  # this session's, so every button is on
    assert not any(at.button(key=k).disabled for k in ACTIONS)
    at.text_input(key=f"runs_name_{run['id']}").set_value("my run")
    ok(at.button(key="runs_rename").click().run())
    assert not at.error and demo_on.run(run["id"])["name"] == "my run"
    ok(at.button(key="runs_resume").click().run())
    assert not at.error and [t.value for t in at.title] == ["Train"]  # resumed, on this session's runner
    at.switch_page("pages/train.py").run()
    ok(at.button(key="train_stop").click().run())
    wait(at, lambda: not at.button(key="train_start").disabled, "the second stop")
    runs_page(run["id"], at)
    ok(at.button(key="runs_del").click().run())
    ok(at.button(key="runs_del_yes").click().run())
    assert not at.error and demo_on.runs() == []


# ---- each cap, where it can be set ---------------------------------------------------------------


def train_with(**settings):
    def act(at: AppTest, corpus) -> AppTest:
        for key, value in {**TINY, **settings}.items():
            at.session_state[f"hp_{key}"] = value
        at.switch_page("pages/train.py").run()
        return at.button(key="train_start").click().run()

    return act


def book_with_epochs(at, corpus):
    at.session_state["hp_device"] = "cpu"
    at.switch_page("pages/book.py").run()
    at.number_input(key="book_epochs").set_value(600)
    return at.button(key="book_start").click().run()


def tune_with(**form):
    def act(at, corpus):
        for key, value in {**{f"hp_{k}": v for k, v in TINY.items()}, "hp_val_tokens": 200, **form}.items():
            at.session_state[key] = value
        at.switch_page("pages/tune.py").run()
        return at.button(key="tune_start").click().run()

    return act


FOREIGN = "from a bigger machine"


def train_again_over_cap(at, corpus):
    config = TrainConfig(**{**TINY, "max_tokens": 60_000})
    run_id = RunStore().create_run(config, corpus.fingerprint(), "cpu", FOREIGN)
    RunStore().finish(run_id, "finished")
    at.switch_page("pages/runs.py").run()
    at.selectbox(key="runs_one").set_value(run_id).run()
    return at.button(key="runs_again").click().run()


def upload_text(at, corpus):
    at.session_state["corpus_source"] = "upload"
    at.switch_page("pages/data.py").run()
    return at.file_uploader(key="data_upload").set_value(("big.txt", b"a b c " * (MIB // 6 + 1), "text/plain")).run()


def upload_checkpoint(at, corpus):
    at.switch_page("pages/runs.py").run()
    data = b"PK" + bytes(demo.DEMO_CAPS["checkpoint_bytes"])  # refused for its size before anything is read
    return at.file_uploader(key="runs_upload").set_value(("big.pt", data, "application/octet-stream")).run()


# (case, what the visitor does, the error shown)
CAPPED = [
    ("train num_hiddens", train_with(num_hiddens=1024), "num_hiddens: at most 512 in this demo, not 1,024"),
    ("train epochs", train_with(num_epochs=501), "Epochs (num_epochs): at most 500 in this demo, not 501"),
    ("train max_tokens", train_with(max_tokens=60_000), "max_tokens: at most 50,000 in this demo, not 60,000"),
    ("train whole text", train_with(max_tokens=0), "max_tokens: at most 50,000 in this demo, not 0 (the whole"),
    ("book epochs", book_with_epochs, "Epochs (num_epochs): at most 500 in this demo, not 600"),
    ("tune trials", tune_with(tune_trials=17), "Trials per study: at most 16 in this demo, not 17"),
    ("tune epochs", tune_with(tune_epochs=600), "Epochs (num_epochs): at most 500 in this demo, not 600"),
    ("tune num_hiddens", tune_with(tune_spec_num_hiddens="64|1024"), "num_hiddens: at most 512 in this demo"),
    ("tune fixed max_tokens", tune_with(hp_max_tokens=60_000), "max_tokens: at most 50,000 in this demo"),
    ("train again", train_again_over_cap, "Train again: max_tokens: at most 50,000 in this demo"),
    ("text upload", upload_text, "Upload size: at most 1 MiB in this demo, not 1.0 MiB (big.txt)"),
    (
        "checkpoint upload",
        upload_checkpoint,
        f"Checkpoint file: Checkpoint size: at most {demo.DEMO_CAPS['checkpoint_bytes'] / MIB:.4g} MiB in this demo",
    ),
]


@pytest.mark.parametrize(("case", "act", "message"), CAPPED, ids=[c[0] for c in CAPPED])
def test_a_value_above_a_cap_is_refused_naming_the_field_and_the_cap(demo_on, corpus, case, act, message):
    runs_before = [r["id"] for r in demo_on.runs()]
    at = ok(act(app(), corpus))
    assert any(message in m for m in shown(at.error)), shown(at.error)
    ok(at.switch_page("pages/train.py").run())
    assert at.button(key="train_stop").disabled  # nothing trains or waits in line in this session
    assert [r["name"] for r in demo_on.runs() if r["id"] not in runs_before and r["name"] != FOREIGN] == []


def test_a_link_cannot_bring_a_value_above_a_cap(demo_on, time_machine_path):
    at = AppTest.from_file(APP, default_timeout=30).run()
    at.query_params.update({"num_hiddens": "1024", "num_epochs": "400"})
    ok(at.switch_page("pages/train.py").run())
    assert any("num_hiddens='1024' was left out: num_hiddens: at most 512" in w for w in shown(at.warning))
    assert at.session_state["hp_num_hiddens"] == 512 and at.session_state["hp_num_epochs"] == 400


# ---- an uploaded checkpoint is used, never kept --------------------------------------------------


def test_an_uploaded_checkpoint_generates_and_leaves_nothing_behind(demo_on, corpus, tmp_path, monkeypatch):
    monkeypatch.setenv("CHARRNN_HOME", str(tmp_path / "elsewhere"))  # the checkpoint comes from another machine
    store, run_id = RunStore(), record(corpus, "elsewhere")
    data = store.checkpoint_bytes(run_id, store.last_checkpoint(run_id)["epoch"])
    monkeypatch.setenv("CHARRNN_HOME", str(demo_on.home))
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))  # a temporary file would land here
    at = app()
    at.switch_page("pages/generate.py").run()
    at.radio(key="generate_gen_model").set_value("checkpoint file").run()
    before = files(demo_on.home)
    at.file_uploader(key="gen_upload").set_value(("mine.pt", data, "application/octet-stream")).run()
    text = generate(at, "time traveller", 20)
    assert text.startswith("time traveller") and len(text) == len("time traveller") + 20
    ok(at.switch_page("pages/inside.py").run())  # Inside looks into the same upload
    assert not at.error and any("checkpoint file mine.pt" in c for c in shown(at.caption))
    assert demo_on.runs() == [] and files(demo_on.home) == before and not any(scratch.iterdir())


# ---- outside demo mode ---------------------------------------------------------------------------


def test_outside_demo_mode_every_run_can_be_changed_and_nothing_is_capped(home, corpus, monkeypatch):
    monkeypatch.delenv("CHARRNN_DEMO", raising=False)
    theirs = record(corpus, "theirs", stop_after=1, num_epochs=4)
    at = app()
    assert at.sidebar.caption and not any("Demo mode" in c.value for c in at.sidebar.caption)
    runs_page(theirs, at)
    assert not any(at.button(key=k).disabled for k in ACTIONS)
    at.text_input(key=f"runs_name_{theirs}").set_value("renamed")
    ok(at.button(key="runs_rename").click().run())
    assert not at.error and home.run(theirs)["name"] == "renamed"

    # above the demo's max_tokens cap; large minibatches, so that the epoch is ~120 steps even on a busy machine
    ok(train_with(num_epochs=1, max_tokens=60_000, val_tokens=0, batch_size=64)(at, corpus))
    assert not at.error, shown(at.error)
    wait(at, lambda: not at.button(key="train_start").disabled, "the run over 60,000 characters", timeout=180)
    ours = [(r["status"], r["config"]["max_tokens"]) for r in home.runs() if r["id"] != theirs]
    assert ours == [("finished", 60_000)]
