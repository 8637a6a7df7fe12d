"""The README's "Use it as a library": its five lines run as written, in a fresh process, and do what the README
says: a run of the book's recipe recorded in the run store, its summary and a continuation printed."""

import os
import re
import subprocess
import sys

from support import ROOT

from charrnn.runs.store import RunStore


def readme_snippet() -> str:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Use it as a library") :]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_readme_library_lines_train_record_and_continue(time_machine_path, tmp_path):
    code = readme_snippet()
    assert len([line for line in code.splitlines() if line.strip()]) == 5  # as many as the README says
    env = {**os.environ, "CHARRNN_HOME": str(tmp_path / "home"), "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    (run,) = RunStore(tmp_path / "home").runs()
    assert (run["status"], run["epochs"], run["config"]["num_epochs"]) == ("finished", 30, 30)
    lines = done.stdout.splitlines()
    assert (
        "perplexity" in lines[0]
        and lines[-1].startswith("time traveller")
        and len(lines[-1]) == len("time traveller") + 30
    )
