"""The app's run store from its secrets (issue 23): `[connections.charrnn]`, read through `st.connection`, puts
every page's runs in that database; a server that cannot be reached is one line on the page, password masked,
and what needs no run store (Data, a checkpoint file on Generate and Runs) still works."""

import pytest
from streamlit.testing.v1 import AppTest
from support import APP, record_run

from charrnn.runs.database import ENV
from charrnn.runs.store import RunStore

TINY = dict(num_epochs=2, num_hiddens=16, max_tokens=2000, batch_size=8, num_steps=8, device="cpu")


@pytest.fixture(autouse=True)
def no_database_url(monkeypatch, tmp_path, fresh_caches):
    """The app sets CHARRNN_DATABASE_URL from its secrets in this process: restored after each test."""
    monkeypatch.setenv(ENV, "")
    monkeypatch.setenv("CHARRNN_HOME", str(tmp_path / "home"))


def runs_page(secrets: dict) -> AppTest:
    """The app with these secrets, on its Runs page, after its first page: whose sidebar says, in one line, if the
    store cannot be used (AppTest lists the sidebar of the first page only; the browser test sees every page's)."""
    at = AppTest.from_file(APP, default_timeout=30)
    at.secrets["connections"] = {"charrnn": secrets}
    at.run()
    said = [e.value.replace("\\", "") for e in at.sidebar.error]
    assert said == [] or (len(said) == 1 and said[0].startswith("Run store unavailable")), said
    return at.switch_page("pages/runs.py").run()


def test_the_secrets_database_holds_every_pages_runs(corpus, tmp_path, monkeypatch):
    shared = f"sqlite:///{tmp_path / 'shared' / 'runs.sqlite'}"
    monkeypatch.setenv(ENV, shared)  # a run recorded on another machine, into the shared database
    (tmp_path / "shared").mkdir()
    run_id = record_run(corpus, "trained elsewhere", TINY)
    monkeypatch.setenv(ENV, "")
    assert RunStore().runs() == []  # this server's own home holds no run

    at = runs_page({"url": shared})
    assert not at.exception and not at.error, (at.exception, [e.value for e in at.error])
    table = next(df.value for df in at.dataframe if "best perplexity" in df.value.columns)
    assert list(table["id"]) == [run_id] and list(table["name"]) == ["trained elsewhere"]


def test_a_server_that_cannot_be_reached_is_one_line_on_the_page(tmp_path):
    at = runs_page(
        {
            "dialect": "postgresql",
            "host": "127.0.0.1",
            "port": 9,
            "username": "u",
            "password": "s3cret-pw",
            "database": "runs",
        }
    )
    assert not at.exception
    (error,) = at.error
    shown = error.value.replace("\\", "")  # the page escapes Markdown
    assert "cannot be reached" in shown and "s3cret-pw" not in shown and "postgresql://u:***@127.0.0.1:9/runs" in shown


def test_with_the_database_down_data_and_checkpoint_files_still_work(time_machine_path):
    down = {"url": "postgresql://u:s3cret-pw@127.0.0.1:9/runs"}
    home = AppTest.from_file(APP, default_timeout=30)
    home.secrets["connections"] = {"charrnn": down}
    (said,) = home.run().sidebar.error
    assert "Run store unavailable" in said.value and "s3cret-pw" not in said.value and not home.main.error
    at = runs_page(down)
    assert not at.exception and len(at.error) == 1 and "cannot be reached" in at.error[0].value
    assert at.get("file_uploader")  # "Generate from a checkpoint file" is still offered
    at.switch_page("pages/data.py").run()
    assert not at.exception and not at.main.error and at.title[0].value == "Data"  # Data needs no store
    at.switch_page("pages/generate.py").run()
    assert not at.exception and len(at.error) == 1
    at.radio(key="generate_gen_model").set_value("checkpoint file").run()
    assert not at.exception and at.get("file_uploader")  # the upload path needs no run store
