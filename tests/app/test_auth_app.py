"""Sign-in's rules on the Runs page (issue 24), with AppTest's signed-in user (`at.user`) and the app's secrets
(`at.secrets`): a signed-in person may change their own runs only, an admin any; nobody signed in sees Sign in.
The sign-in flow itself, through a real provider, is tests/browser/test_sign_in_browser.py."""

import time

import optuna
from streamlit.testing.v1 import AppTest
from support import APP, ok, record_run

from charrnn.runs import demo
from charrnn.tune.storage import open_storage, storage_url
from ui.auth import USER

TINY = dict(num_epochs=1, num_hiddens=16, max_tokens=2000, batch_size=4, num_steps=8, device="cpu")
AUTH = {
    "redirect_uri": "http://127.0.0.1:8501/oauth2callback",
    "cookie_secret": "a-test-cookie-secret-0123456789",
    "client_id": "charrnn",
    "client_secret": "s",
    "server_metadata_url": "http://127.0.0.1:9/.well-known/openid-configuration",
}


def browser(email: str | None, admins=()) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.secrets["auth"] = AUTH
    at.secrets["charrnn"] = {"admins": list(admins)}
    at.user = {"is_logged_in": True, "email": email, "sub": email} if email else {"is_logged_in": False}
    return ok(at.run())


def changeable(at: AppTest, run_id: str) -> bool:
    at.switch_page("pages/runs.py").run()
    ok(at.selectbox(key="runs_one").set_value(run_id).run())
    states = {at.button(key=k).disabled for k in ("runs_rename", "runs_del")}
    assert len(states) == 1
    return not states.pop()


def test_a_signed_in_person_changes_their_own_runs_and_an_admin_any(home, corpus):
    alices, bobs = record_run(corpus, "alice's", TINY), record_run(corpus, "bob's", TINY)
    demo.claim(alices, USER + "alice@example.com", who="alice@example.com")
    demo.claim(bobs, USER + "bob@example.com", who="bob@example.com")
    alice = browser("alice@example.com")
    assert any("Signed in as alice@example.com" in c.value for c in alice.sidebar.caption), alice.sidebar.caption
    assert changeable(alice, alices) and not changeable(alice, bobs)
    assert [r["owner"] for r in home.runs()] == ["bob@example.com", "alice@example.com"]
    assert changeable(browser("teacher@example.com", admins=["teacher@example.com"]), bobs)
    assert not changeable(browser("teacher@example.com"), bobs)  # not named an admin: read-only

    nobody = browser(None)
    assert [b.label for b in nobody.sidebar.button if b.key == "auth_sign_in"] == ["Sign in"]
    assert not changeable(nobody, alices)  # this browser started neither


def test_without_auth_in_the_secrets_nothing_changes(home, corpus):
    run_id = record_run(corpus, "anyone's", TINY)
    at = ok(AppTest.from_file(APP, default_timeout=60).run())
    assert not [b for b in at.sidebar.button if b.key in ("auth_sign_in", "auth_sign_out")]
    assert changeable(at, run_id)  # outside demo mode every run may be changed, as before


def test_not_signed_in_is_demo_mode_and_signed_in_is_not(home):
    """With sign-in on (and CHARRNN_DEMO off), the demo's caps apply to whoever is not signed in."""
    nobody, alice = browser(None), browser("alice@example.com")
    assert any(c.value.startswith("Demo mode:") for c in nobody.sidebar.caption)
    assert not any(c.value.startswith("Demo mode:") for c in alice.sidebar.caption)
    nobody.session_state["hp_num_hiddens"] = 1024
    nobody.switch_page("pages/train.py").run()
    ok(nobody.button(key="train_start").click().run())
    assert any("at most 512 in this demo, not 1,024" in e.value for e in nobody.error), [e.value for e in nobody.error]
    assert home.runs() == []  # refused before anything started


def test_a_study_started_signed_in_records_its_owner_as_its_trials_runs_do(home, time_machine_path, monkeypatch):
    monkeypatch.delenv("CHARRNN_TUNE_STORAGE", raising=False)  # the default: tune.sqlite beside the runs
    at = browser("alice@example.com")
    tiny = dict(num_hiddens=16, max_tokens=2000, batch_size=4, num_steps=8, val_tokens=200, eval_every=1)
    for key, value in {**{f"hp_{k}": v for k, v in tiny.items()}, "hp_device": "cpu"}.items():
        at.session_state[key] = value
    settings = {"tune_trials": 1, "tune_epochs": 1, "tune_pruner": "none", "tune_name": "alices study"}
    for key, value in settings.items():
        at.session_state[key] = value
    at.switch_page("pages/tune.py").run()
    ok(at.button(key="tune_start").click().run())
    deadline = time.monotonic() + 120
    while at.button(key="tune_start").disabled:
        assert time.monotonic() < deadline, "the study did not end"
        time.sleep(1)
        ok(at.run())
    study = optuna.load_study(study_name="alices study", storage=open_storage(storage_url()))
    assert study.user_attrs["owner"] == "alice@example.com"
    shown = [c.value.replace("\\", "") for c in at.caption]  # captions are escaped Markdown (ui.display.literal)
    assert any("Started by alice@example.com." in c for c in shown), shown
    (run,) = home.runs()
    assert run["owner"] == "alice@example.com" and run["study"] == "alices study"
