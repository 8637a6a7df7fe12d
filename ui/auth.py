"""Sign-in (issue 24): when the app's secrets configure ``[auth]``, people sign in through ``st.login`` (OpenID
Connect, through Authlib) and own the runs they start across days, browsers and devices; everyone signed in sees
everyone's runs, read-only but for their own; an admin named in the secrets may change any. Without ``[auth]``
nothing changes: a visitor is this browser (ui.visitor), and outside demo mode every run may be changed.

```toml
[auth]
redirect_uri = "https://your-app.example/oauth2callback"
cookie_secret = "a long random string"
client_id = "..."
client_secret = "..."
server_metadata_url = "https://accounts.example/.well-known/openid-configuration"

[charrnn]
admins = ["teacher@example.com"]
```
"""

import streamlit as st

USER = "user:"  # a signed-in person's key (ui.visitor) is this and their name: never a cookie's or a link's key


def _secrets(section: str) -> dict:
    try:
        return dict(st.secrets.get(section, {}))
    except FileNotFoundError:  # Streamlit's StreamlitSecretNotFoundError: no secrets.toml anywhere
        return {}


def configured() -> bool:
    """Whether the secrets configure sign-in."""
    return bool(_secrets("auth"))


def user() -> str | None:
    """The signed-in person (their email, else the provider's subject), or None."""
    if not configured() or not st.user.get("is_logged_in", False):
        return None
    return str(st.user.get("email") or st.user.get("sub") or "") or None


def is_admin() -> bool:
    """Whether the signed-in person is one of the secrets' ``[charrnn] admins``, who may change any run."""
    who = user()
    return who is not None and who in {str(a) for a in _secrets("charrnn").get("admins", ())}


def sidebar() -> None:
    """Sign in / Sign out, and who is signed in (only when the secrets configure sign-in)."""
    if not configured():
        return
    who = user()
    if who is None:
        st.button("Sign in", on_click=st.login, icon=":material/login:", key="auth_sign_in")
        st.caption("Sign in to keep your runs across browsers and devices; until then this browser is you.")
        return
    st.caption(f"Signed in as {who}" + (" (admin)" if is_admin() else ""))
    st.button("Sign out", on_click=st.logout, icon=":material/logout:", key="auth_sign_out")
