"""Sign-in (issue 24) in a real browser, against a local OpenID Connect provider (oidc-provider-mock, started here):
alice signs in and starts a run, signs out; bob, signed in, sees it owned by her and cannot stop it; alice, signed in
again in another browser, can. With the app's secrets configuring ``[auth]`` (ui.auth)."""

import threading

import oidc_provider_mock  # requirements-dev.txt
import pytest
import werkzeug.serving
from support import OWN_CHART_POINTS, go, new_context, no_exception, open_page, press, serve, settle, shot, wait_for

from charrnn.runs.store import RunStore

pytestmark = pytest.mark.browser

TRAIN = "num_hiddens=16&max_tokens=2000&batch_size=4&num_steps=8&num_epochs=100000&device=cpu"
USERS = {"alice": "alice@example.com", "bob": "bob@example.com"}


@pytest.fixture
def provider():
    """The mock provider on a free 127.0.0.1 port, in a thread (any client id, secret and redirect URI)."""
    users = [oidc_provider_mock.User(sub=sub, claims={"email": email}) for sub, email in USERS.items()]
    server = werkzeug.serving.make_server("127.0.0.1", 0, oidc_provider_mock.app(user_claims=users), threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def app(provider, tmp_path, time_machine_path):
    secrets = tmp_path / "secrets.toml"
    secrets.write_text(
        "[auth]\n"
        'redirect_uri = "http://127.0.0.1:{port}/oauth2callback"\n'  # {port}: Streamlit fills in its own
        'cookie_secret = "a-test-cookie-secret-0123456789"\n'
        'client_id = "charrnn"\n'
        'client_secret = "charrnn-secret"\n'
        f'server_metadata_url = "{provider}/.well-known/openid-configuration"\n'
    )
    yield from serve(time_machine_path, CHARRNN_HOME=str(tmp_path / "home"), STREAMLIT_SECRETS_FILES=str(secrets))


def sign_in(pg, app: str, provider: str, who: str):
    """Sign in as `who` through the provider's form; back on the app's home page."""
    click(pg, "auth_sign_in")  # the page leaves for the provider: no script run to wait for
    pg.wait_for_url(f"{provider}/oauth2/authorize?*")
    pg.get_by_placeholder("sub").fill(who)
    pg.get_by_role("button", name="Authorize", exact=True).click()
    pg.wait_for_url(f"{app}/")
    pg.get_by_text(f"Signed in as {USERS[who]}").wait_for()


def click(pg, key: str):
    """Click a button that takes the browser to another site (sign in, sign out): unlike `press`, no script run
    of this page is waited for."""
    pg.locator(f".st-key-{key}").get_by_role("button").click()


def runs_page_at(pg, run_id: str):
    go(pg, "Runs")
    pg.get_by_text(f"id {run_id}").first.wait_for()


def test_a_run_is_its_signers_own_on_every_browser_and_read_only_to_others(app, provider, browser, tmp_path):
    store = RunStore(tmp_path / "home")
    first = open_page(new_context(browser), app)
    assert first.get_by_text("Signed in as").count() == 0  # not signed in: this browser is the visitor
    sign_in(first, app, provider, "alice")
    first.goto(f"{app}/train?{TRAIN}")
    settle(first)
    press(first, "train_start")
    first.wait_for_function(f"({OWN_CHART_POINTS})() >= 1")
    (run,) = store.runs()
    assert run["status"] == "running" and run["owner"] == "alice@example.com"
    click(first, "auth_sign_out")
    first.wait_for_url(f"{provider}/oauth2/end_session?*")  # the provider ends its own session too
    first.get_by_role("button", name="End session").click()
    first.wait_for_url(f"{app}/")
    settle(first)
    assert first.get_by_text("Signed in as").count() == 0

    bob = open_page(new_context(browser), app)
    sign_in(bob, app, provider, "bob")
    runs_page_at(bob, run["id"])
    assert bob.locator(".st-key-runs_stop").get_by_role("button").is_disabled()  # hers: read-only to him
    assert bob.get_by_text("you can change only your own runs").count() > 0
    assert bob.locator("[data-testid='stDataFrame']").count() == 1
    bob.locator(".st-key-runs_only_mine").get_by_text("Only mine").click()  # none of the runs is his
    settle(bob)
    assert bob.get_by_text("None of the runs is yours").count() == 1
    no_exception(bob)
    shot(bob, "sign-in-bob-reads-alices-run")

    alice = open_page(new_context(browser), app)  # another browser: only her sign-in says who she is
    sign_in(alice, app, provider, "alice")
    runs_page_at(alice, run["id"])
    assert alice.locator(".st-key-runs_stop").get_by_role("button").is_enabled()
    press(alice, "runs_stop")
    wait_for(alice, lambda: store.run(run["id"])["status"] == "stopped", "her Stop did not stop her run")
    no_exception(alice)
    assert store.runs()[0]["owner"] == "alice@example.com"
