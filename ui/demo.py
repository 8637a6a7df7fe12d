"""Demo mode in the app (`CHARRNN_DEMO=1`; the caps are `charrnn.demo`'s): which runs this session may
change, and the upload cap. Outside demo mode every run may be changed and uploads keep the server's
limit."""

from charrnn import demo
from ui.training import runner

READ_ONLY = (
    "in this demo you can change only the runs this browser session started; this one is read-only "
    "(you can still watch it, generate from it or train again with its settings)."
)


def own_runs() -> frozenset[str]:
    """The ids of the runs this session started: its runner records each one as it enters the store."""
    return runner().started


def may_change(run_id: str) -> bool:
    """Whether this session may rename, delete or resume the run."""
    return not demo.demo_enabled() or run_id in own_runs()


def read_only_help(run_id: str, help_text: str | None = None) -> str | None:
    """A button's help: why it is off for a run of another session, else its own help."""
    return help_text if may_change(run_id) else READ_ONLY[0].upper() + READ_ONLY[1:]


def upload_mb() -> int | None:
    """The uploader's own limit in MiB (the browser refuses a larger file before sending it); None: the
    server's (maxUploadSize)."""
    return demo.DEMO_CAPS["upload_bytes"] >> 20 if demo.demo_enabled() else None


def check_upload(file) -> None:
    """ValueError naming the file when it is above the demo's cap; the browser's check can be bypassed.
    Outside demo mode the file is not even looked at."""
    if demo.demo_enabled():
        demo.require_upload(getattr(file, "size", None) or len(file.getvalue()), file.name)
