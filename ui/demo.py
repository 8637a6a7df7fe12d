"""Demo mode in the app (`CHARRNN_DEMO=1`; the caps are `charrnn.runs.demo`'s): which runs this visitor may
change, and the upload caps. Outside demo mode every run may be changed and uploads keep the server's
limit."""

import math

from charrnn.runs import demo
from ui import auth
from ui.visitor import own_runs

READ_ONLY = (
    "in this demo you can change only your own runs (those this browser started, or your link's); this one "
    "is read-only (you can still watch it, generate from it or train again with its settings)."
)
READ_ONLY_SIGNED_IN = (  # with sign-in on (ui.auth)
    "you can change only your own runs (those you started signed in, or this browser's before you signed in); "
    "this one is read-only (you can still watch it, generate from it or train again with its settings)."
)


def read_only() -> str:
    """Why a run of someone else cannot be changed here."""
    return READ_ONLY_SIGNED_IN if auth.configured() else READ_ONLY


CAPS = {"text": "upload_bytes", "checkpoint": "checkpoint_bytes"}


def capped() -> bool:
    """Whether the demo's caps apply to this visitor: on a demo server (CHARRNN_DEMO), to everyone; with sign-in on,
    to whoever is not signed in ("not signed in: demo mode")."""
    return demo.demo_enabled() or (auth.configured() and auth.user() is None)


def require_caps(config, text_chars: int | None = None, vocab_size: int | None = None) -> None:
    """charrnn.runs.demo.require_caps for this visitor (see `capped`)."""
    demo.require_caps(config, text_chars, vocab_size, on=capped())


def may_change(run_id: str) -> bool:
    """Whether this visitor may stop, rename, delete or resume the run: any run, outside demo mode and without
    sign-in; else their own (ui.visitor), or any for an admin (ui.auth)."""
    if not demo.demo_enabled() and not auth.configured():
        return True
    return auth.is_admin() or run_id in own_runs()


def read_only_help(run_id: str, help_text: str | None = None) -> str | None:
    """A button's help: why it is off for a run of another visitor, else its own help."""
    return help_text if may_change(run_id) else read_only()[0].upper() + read_only()[1:]


def upload_mb(kind: str = "text") -> int | None:
    """The uploader's own limit in MiB for a `kind` ("text", "checkpoint") of file (the browser refuses a
    larger file before sending it); None: the server's (maxUploadSize)."""
    return math.ceil(demo.DEMO_CAPS[CAPS[kind]] / 2**20) if capped() else None


def check_upload(file, kind: str = "text") -> None:
    """ValueError naming the file when it is above the demo's cap for its kind; the browser's check can be
    bypassed. Outside demo mode the file is not even looked at."""
    if capped():
        demo.require_upload(getattr(file, "size", None) or len(file.getvalue()), file.name, CAPS[kind], on=True)
