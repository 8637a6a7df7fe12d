"""Who the visitor is, across reloads and tabs: a secret key the browser keeps, and the visitor's runner.

A browser session lasts one tab and ends at a reload, so it cannot own a run that lasts longer. The
visitor is instead a random key, kept in a cookie (every tab and reload of this browser) and shown as
"your link" (`?key=SECRET`, for another browser; the address drops it once read, so a shared address
never carries it). The key's runner lives in a process-wide registry, not in the session: closing the
tab leaves the run training (within the demo's caps), and the next page this visitor opens shows it
live, with Stop. Which runs the key started is written in the run store (`charrnn.runs.demo.claim`), so
that they stay the visitor's after the runner is gone, on every app server that shares the store.
"""

import re
import secrets
import threading
import time
from urllib.parse import urlencode, urlsplit

import streamlit as st

from charrnn.runs import demo
from charrnn.runs.runner import Runner
from ui import auth

COOKIE = "charrnn_visitor"
PARAM = "key"  # the private link's query parameter
KEY = re.compile(r"[A-Za-z0-9_-]{24,64}")  # what token_urlsafe(24) writes; anything else is not a key
IDLE_S = 3600  # a runner nobody has looked at for this long, and not training, is dropped
MOST = 1000  # runners kept at most (idle ones go first)


class Registry:
    """key -> Runner, shared by every session of the server; each entry remembers when it was last used."""

    def __init__(self):
        self._lock = threading.Lock()
        self._runners: dict[str, tuple[Runner, float]] = {}

    def runner(self, key: str) -> Runner:
        now = time.monotonic()
        with self._lock:
            self._sweep(now)
            found = self._runners.get(key)
            who = key.removeprefix(auth.USER) if key.startswith(auth.USER) else None  # signed in: named
            run = found[0] if found else Runner(on_record=lambda run_id: demo.claim(run_id, key, who=who))
            self._runners[key] = (run, now)
            return run

    def _sweep(self, now: float):
        """Training runners count as used now; idle ones go after IDLE_S, or the oldest beyond MOST."""
        for key, (run, used) in list(self._runners.items()):
            if run.running():
                self._runners[key] = (run, now)
            elif now - max(used, run.idle_since) > IDLE_S:  # unlooked-at and idle since its last run ended
                del self._runners[key]
        runners = self._runners.items()
        idle = sorted((max(used, run.idle_since), key) for key, (run, used) in runners if not run.running())
        for _, key in idle[: max(0, len(self._runners) - MOST)]:
            del self._runners[key]

    def peek(self, key: str) -> Runner | None:
        """The key's runner if there is one, without making one."""
        with self._lock:
            found = self._runners.get(key)
            return found[0] if found else None

    def stop_all(self):
        with self._lock:
            for run, _ in self._runners.values():
                run.stop()


@st.cache_resource(show_spinner=False, on_release=lambda r: r.stop_all())
def registry() -> Registry:
    return Registry()


def visitor_key() -> str:
    """This visitor's key: the session's, else the browser's cookie, else a new one (kept by `keep_cookie`).
    A private link's key (`?key=`) is taken out of the address at once (a copied address never carries
    it) and becomes this visitor's, except where this browser already owns runs under another key: then
    `pending_link` asks first, so that opening someone's link never silently hands them this browser. A person
    signed in (ui.auth) is their own key, the same in every browser; no cookie or link can spell it."""
    if auth.user() is not None:
        if st.query_params.get(PARAM) is not None:
            del st.query_params[PARAM]  # never kept in the address; a signed-in person is their sign-in
        return auth.USER + auth.user()
    if "visitor_key" not in st.session_state:
        kept = st.context.cookies.get(COOKIE) if st.context.cookies else None
        st.session_state["visitor_key"] = kept if kept and KEY.fullmatch(kept) else secrets.token_urlsafe(24)
    linked = st.query_params.get(PARAM)
    if linked is not None:
        del st.query_params[PARAM]
    if linked and KEY.fullmatch(linked) and linked != st.session_state["visitor_key"]:
        if own_runs_of(st.session_state["visitor_key"]):
            st.session_state["_pending_key"] = linked
        else:
            st.session_state["visitor_key"] = linked
    return st.session_state["visitor_key"]


def own_runs_of(key: str) -> frozenset[str]:
    found = registry().peek(key)
    return (found.started if found is not None else frozenset()) | demo.owned(key)


def pending_link():
    """Ask, once a private link of another visitor was opened in a browser that owns runs: switch to it
    (this browser's own runs then need their own link to be reached again), or keep this browser's."""
    linked = st.session_state.get("_pending_key")
    if not linked:
        return
    st.warning(
        "The link you opened belongs to another visitor's runs. Use it, and this browser becomes that "
        "visitor (open your own link to come back to your runs), or keep your own runs."
    )
    c = st.columns(2)
    c[0].button("Use the link's runs", on_click=_take_pending, key="visitor_take_link")
    c[1].button("Keep my own runs", on_click=lambda: st.session_state.pop("_pending_key", None), key="visitor_keep")


def _take_pending():
    st.session_state["visitor_key"] = st.session_state.pop("_pending_key")


def runner() -> Runner:
    """This visitor's trainer: one run at a time, whichever tab started it; it outlives the tab."""
    return registry().runner(visitor_key())


def own_runs() -> frozenset[str]:
    """The runs this visitor started: those its runner caught this time, and those recorded for its key."""
    return runner().started | demo.owned(visitor_key())


def keep_cookie():
    """Store the key in the browser (once per session, when the browser's cookie differs), so that a
    reload or another tab of this browser is the same visitor. The cookie is only ever read by this app. A
    signed-in person needs none (and this browser's anonymous key stays as it was)."""
    if auth.user() is not None:
        return
    key = visitor_key()
    if st.context.cookies.get(COOKIE) == key or st.session_state.get("_cookie_sent") == key:
        return
    st.session_state["_cookie_sent"] = key
    st.html(
        f"<script>document.cookie = '{COOKIE}={key}; path=/; max-age=31536000; SameSite=Strict';</script>",
        unsafe_allow_javascript=True,
    )


def your_link() -> str:
    """The private link that gives this visitor's runs to whoever opens it (another browser of theirs)."""
    return f"{app_root()}/train?{urlencode({PARAM: visitor_key()})}"


def app_root(url: str | None = None, base_path: str | None = None) -> str:
    """The app's root address (scheme, host and the server's baseUrlPath) from any of its pages' address."""
    parts = urlsplit(url if url is not None else st.context.url or "")
    path = (base_path if base_path is not None else st.get_option("server.baseUrlPath") or "").strip("/")
    return f"{parts.scheme}://{parts.netloc}" + (f"/{path}" if path else "")


def show_your_link():
    """The sidebar's "Your link" popover, once the visitor has a run (a signed-in person signs in instead)."""
    if auth.user() is not None or not own_runs():
        return
    with st.sidebar.popover("Your link", icon=":material/key:"):
        st.caption(
            "Keep it private: it opens your runs, with Stop, Rename and Delete, in any browser. This "
            "browser remembers you by itself."
        )
        st.code(your_link(), language=None)
