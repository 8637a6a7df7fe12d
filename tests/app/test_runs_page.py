"""The Runs page and the run store through AppTest: runs outlive the app, compare, rename, delete,
resume, train again, and Generate from a saved run or an uploaded checkpoint.

Runs are made by the real core (`train_recorded`, a few tiny epochs) in a store of their own."""

import signal
import time

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest
from support import APP, cli_train, figure, generate, record_run

from charrnn.data import load_corpus
from charrnn.runs.store import RunStore

TINY = dict(num_epochs=3, num_hiddens=16, max_tokens=2000, batch_size=8, num_steps=8, device="cpu")


@pytest.fixture(autouse=True)
def own_store(tmp_path, monkeypatch, fresh_caches):
    """An empty store per test (and fresh Streamlit caches: AppTest instances share them)."""
    monkeypatch.setenv("CHARRNN_HOME", str(tmp_path / "home"))
    return RunStore()


@pytest.fixture(scope="module")
def corpus(time_machine_path):
    return load_corpus("time_machine", mode="book", max_tokens=2000, download=False)


def record(corpus, name: str, stop_after: int | None = None, **settings) -> str:
    """A run trained and recorded by the core, as `python -m charrnn train` does; stopped early if asked."""
    return record_run(corpus, name, TINY, stop_after, **settings)


def runs_page() -> AppTest:
    """A fresh app (as after a restart), on the Runs page."""
    at = AppTest.from_file(APP, default_timeout=30).run()
    at.switch_page("pages/runs.py").run()
    assert not at.exception and not at.error, (at.exception, [e.value for e in at.error])
    return at


def arrived(at: AppTest, page: str, title: str) -> AppTest:
    """A button's callback switched pages: check it, and tell AppTest, whose next runs would go back."""
    assert not at.exception, at.exception
    assert [t.value for t in at.title] == [title]
    return at.switch_page(page)


def runs_table(at: AppTest):
    return next(df.value for df in at.dataframe if "best perplexity" in df.value.columns)


def test_every_run_survives_a_restart_with_its_full_curve(own_store, corpus):
    """A run trained in the app and one from the core; a new app shows both, overlaid on one chart."""
    at = AppTest.from_file(APP, default_timeout=30).run()
    at.switch_page("pages/train.py").run()
    for key, value in (("num_epochs", 3), ("num_hiddens", 16), ("max_tokens", 2000), ("batch_size", 4)):
        at.number_input(key=f"train_hp_{key}").set_value(value)
    at.number_input(key="train_hp_num_steps").set_value(8)
    at.button(key="train_start").click().run()
    end = time.monotonic() + 30
    while at.button(key="train_start").disabled and time.monotonic() < end:
        time.sleep(0.3)
        at.run()
    assert not at.button(key="train_start").disabled, "the app's run did not end"
    other = record(corpus, "from the core", lr=2.0)
    del at
    st.cache_data.clear()
    st.cache_resource.clear()

    at = runs_page()
    table = runs_table(at)
    ids = [r["id"] for r in own_store.runs()]
    assert len(ids) == 2 and set(table["id"]) == set(ids)
    assert list(table["epochs"]) == [3, 3] and set(table["status"]) == {"finished"}
    assert "from the core" in set(table["name"])

    at.multiselect(key="runs_runs_selected").set_value(ids).run()
    assert not at.exception
    traces = figure(at, "runs_ppl")["data"]
    assert [t["name"] for t in traces] == [r["name"] for r in own_store.runs()]
    for trace, run_id in zip(traces, ids, strict=True):
        history = own_store.history(run_id)
        assert trace["x"] == [1, 2, 3]
        assert trace["y"] == pytest.approx([h["perplexity"] for h in history])
    configs = next(df.value for df in at.dataframe if "differs" in df.value.columns)
    assert bool(configs.loc["lr", "differs"]) and not configs.loc["num_hiddens", "differs"]
    assert set(configs.loc["lr"].iloc[1:]) == {"1.0", "2.0"}
    assert other in ids


def test_rename_and_delete_after_confirming(own_store, corpus):
    keep, drop = record(corpus, "keep me"), record(corpus, "drop me")
    at = runs_page()
    at.selectbox(key="runs_one").set_value(keep).run()
    at.text_input(key=f"runs_name_{keep}").set_value("  ").run()
    at.button(key="runs_rename").click().run()
    assert any("New name" in e.value for e in at.error)  # empty: says which field and what to do
    at.text_input(key=f"runs_name_{keep}").set_value("renamed <b>run</b>").run()
    at.button(key="runs_rename").click().run()
    assert not at.error
    assert own_store.run(keep)["name"] == "renamed <b>run</b>"
    assert "renamed <b>run</b>" in set(runs_table(at)["name"])

    at.selectbox(key="runs_one").set_value(drop).run()
    at.button(key="runs_del").click().run()
    assert {r["id"] for r in own_store.runs()} == {keep, drop}  # nothing happens before the confirmation
    at.button(key="runs_del_no").click().run()
    assert "runs_del_yes" not in [b.key for b in at.button]  # cancelled
    at.button(key="runs_del").click().run()
    at.button(key="runs_del_yes").click().run()
    assert not at.exception and not at.error
    assert [r["id"] for r in own_store.runs()] == [keep]
    assert list(runs_table(at)["id"]) == [keep] and own_store.checkpoints(drop) == []


def test_train_again_copies_the_settings_into_the_train_form(own_store, corpus):
    run_id = record(corpus, "tuned", lr=0.5, num_hiddens=24, seed=7)
    at = runs_page()
    at.switch_page("pages/train.py").run()  # the form's widgets exist: they must follow the copied settings
    at.switch_page("pages/runs.py").run()
    arrived(at.button(key="runs_again").click().run(), "pages/train.py", "Train")
    form = {k: at.number_input(key=f"train_hp_{k}").value for k in ("lr", "num_hiddens", "seed", "num_epochs")}
    assert form == {"lr": 0.5, "num_hiddens": 24, "seed": 7, "num_epochs": 3}
    assert at.session_state["hp_max_tokens"] == 2000 and run_id


def test_resume_continues_a_stopped_run_in_the_same_run(own_store, corpus):
    run_id = record(corpus, "stopped early", stop_after=2, num_epochs=4)
    assert own_store.run(run_id)["status"] == "stopped"
    at = runs_page()
    at.selectbox(key="runs_one").set_value(run_id).run()
    arrived(at.button(key="runs_resume").click().run(), "pages/train.py", "Train")
    assert not at.error, [e.value for e in at.error]
    end = time.monotonic() + 30
    while at.button(key="train_start").disabled and time.monotonic() < end:
        time.sleep(0.3)
        at.run()
    history = next(df.value for df in at.dataframe if "grad norm" in df.value.columns)
    assert list(history["epoch"]) == [1, 2, 3, 4]  # the curve continues, nothing lost or repeated
    assert [h["epoch"] for h in own_store.history(run_id)] == [1, 2, 3, 4]
    assert own_store.run(run_id)["status"] == "finished" and len(own_store.runs()) == 1


def test_generate_from_a_saved_run_and_from_an_uploaded_checkpoint(own_store, corpus):
    run_id = record(corpus, "for generating")
    at = runs_page()
    arrived(at.button(key="runs_generate").click().run(), "pages/generate.py", "Generate")
    assert not at.error
    assert at.session_state["gen_run"] == run_id
    text = generate(at, "time traveller", 20)
    assert text.startswith("time traveller") and len(text) == len("time traveller") + 20

    at.switch_page("pages/runs.py").run()
    data = own_store.checkpoint_bytes(run_id, own_store.last_checkpoint(run_id)["epoch"])
    at.file_uploader(key="runs_upload").set_value(("mine.pt", b"not a checkpoint", "application/octet-stream")).run()
    assert any("Checkpoint file" in e.value for e in at.error) and not at.exception
    at.file_uploader(key="runs_upload").set_value(("mine.pt", data, "application/octet-stream")).run()
    assert not at.error
    arrived(at.button(key="runs_gen_upload").click().run(), "pages/generate.py", "Generate")
    assert at.session_state["gen_model"] == "checkpoint file"
    at.button(key="gen_go").click().run()
    assert not at.exception and not at.error
    assert len(at.code[0].value) == len("time traveller") + 20


def test_a_run_training_elsewhere_can_be_watched_live_and_read_only(own_store, time_machine_path):
    """A `python -m charrnn train` process trains; the Train page lists it, shows its growing curve
    from the store on request, offers nothing that could stop it, and shows when its process dies."""
    args = ["--epochs", "100000", "--num-hiddens", "16", "--max-tokens", "2000", "--batch-size", "4"]
    proc = cli_train(own_store.home, *args, "--num-steps", "8", "--device", "cpu")
    try:
        deadline = time.monotonic() + 60
        while not own_store.runs() or own_store.runs()[0]["epochs"] < 2:
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline, "the CLI run never reached epoch 2"
            time.sleep(0.2)
        (run,) = own_store.runs()

        at = AppTest.from_file(APP, default_timeout=30).run()
        at.switch_page("pages/train.py").run()
        assert not at.exception
        assert "Training elsewhere" in [h.value for h in at.subheader]
        assert any(f"run {run['id']}" in option for option in at.selectbox(key="train_watch_run").options)
        assert not [c for c in at.get("plotly_chart")]  # nothing is shown before the user asks
        at.selectbox(key="train_watch_run").set_value(run["id"]).run()
        assert not at.exception and not at.error
        first = figure(at, "train_watch_ppl")["data"][0]
        assert len(first["x"]) >= 2 and first["x"] == list(range(1, len(first["x"]) + 1))
        stored = [h["perplexity"] for h in own_store.history(run["id"])]
        assert first["y"] == pytest.approx(stored[: len(first["y"])])
        assert at.button(key="train_stop").disabled  # the session's Stop is its own run's only
        deadline = time.monotonic() + 30  # an epoch took up to 5 s on 2 cores shared by several test sessions
        while len(figure(at, "train_watch_ppl")["data"][0]["x"]) <= len(first["x"]):
            assert time.monotonic() < deadline, "the watched curve did not move on"
            time.sleep(0.5)
            at.run()  # what run_every does in a browser: the curve moves on

        at.switch_page("pages/runs.py").run()  # the Runs page can follow it too
        at.selectbox(key="runs_one").set_value(run["id"]).run()
        at.toggle(key="runs_follow").set_value(True).run()
        assert not at.exception and not at.error
        assert len(figure(at, "runs_watch_ppl")["data"][0]["x"]) >= len(first["x"])
        assert at.button(key="runs_del").disabled  # a training run cannot be deleted
        at.switch_page("pages/train.py").run()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    at.run()  # the process is gone: the run shows as interrupted, the view keeps its curve
    assert not at.exception
    assert own_store.run(run["id"])["status"] == "interrupted"
    assert any("interrupted after" in p.proto.text for p in at.get("progress"))
    assert any(f"run {run['id']}" in o and "interrupted" in o for o in at.selectbox(key="train_watch_run").options)
    at.selectbox(key="train_watch_run").set_value(None).run()
    assert not at.get("plotly_chart") and "Training elsewhere" not in [h.value for h in at.subheader]
