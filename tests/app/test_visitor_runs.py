"""Issue 21, what a visitor trips over (AppTest and the core): run names and "yours" (12), the Runs table and
overlay (13), links with no None (14), and the small ones: a seed in a link, one name cap for the app and the
CLI, a demo checkpoint cap that admits every checkpoint the demo can train."""

import io
import re
import subprocess
import sys
import time

import pytest
import torch
from streamlit.testing.v1 import AppTest
from support import APP, figure, ok, record_run

from charrnn.data import load_corpus
from charrnn.models import make_model
from charrnn.runs import demo, runner
from charrnn.runs.checkpoint import make_checkpoint
from charrnn.train import EpochStats, TrainConfig
from charrnn.vocab import Vocab

TINY = dict(num_epochs=2, num_hiddens=16, max_tokens=2000, batch_size=4, num_steps=8, device="cpu")


def plain(elements) -> list[str]:
    return [re.sub(r"\\(.)", r"\1", e.value) for e in elements]


def runs_table(at: AppTest):
    return next(df for df in at.dataframe if "best perplexity" in df.value.columns)


def test_default_names_say_what_the_run_is_and_yours_marks_the_visitors(home, corpus):
    """Item 12: the app's run is named by cell, layers x width, lr and the time; it is marked "yours" in the
    table and the pickers, another's (the CLI's) is not."""
    theirs = record_run(corpus, "from the CLI", TINY)
    at = ok(AppTest.from_file(APP, default_timeout=60).run())
    for key, value in {**TINY, "cell": "lstm", "num_layers": 2, "lr": 0.5}.items():
        at.session_state[f"hp_{key}"] = value
    at.switch_page("pages/train.py").run()
    ok(at.button(key="train_start").click().run())
    end = time.monotonic() + 90
    while len(home.runs()) < 2 or home.runs()[0]["status"] == "running":
        assert time.monotonic() < end, "the run did not end"
        time.sleep(0.5)
    mine = home.runs()[0]
    assert re.fullmatch(r"lstm-2x16 lr0\.5 \d\d:\d\d", mine["name"]), mine["name"]
    ok(at.switch_page("pages/runs.py").run())
    table = runs_table(at).value.set_index("id")
    assert table.loc[mine["id"], "yours"] == "yours" and table.loc[theirs, "yours"] == ""
    options = at.selectbox(key="runs_one").options
    assert f"{mine['name']} · yours" in options and "from the CLI" in options


def test_the_runs_table_puts_what_is_compared_first_rounded_and_blank_where_missing(home, corpus):
    """Item 13: name, status, held-out, training perplexity, then lr and clip; lr to 3 significant figures,
    perplexity to 2 decimals, tokens/s whole; missing figures blank; the overlay's ticks left to Plotly."""
    long_id = record_run(corpus, "trial", TINY, lr=2.8804589391840785, clip=0.5, num_epochs=22, eval_every=11)
    record_run(corpus, "no held-out", TINY, val_tokens=0)
    at = ok(AppTest.from_file(APP, default_timeout=60).run())
    at.switch_page("pages/runs.py").run()
    el = runs_table(at)
    table = el.value
    columns = list(table.columns)
    first = ["name", "yours", "status", "held-out (best)", "held-out (final)", "final perplexity", "best perplexity"]
    assert columns[:7] == first and columns[8:10] == ["lr", "clip"], columns
    row = table.set_index("id").loc[long_id]
    assert row["lr"] == 2.88 and row["clip"] == 0.5
    assert row["final perplexity"] == round(row["final perplexity"], 2) and row["tokens/s"] == int(row["tokens/s"])
    assert table["held-out (best)"].isna().sum() == 1  # the run without held-out text: missing...
    assert el.proto.placeholder == ""  # ...and shown blank, never "None"

    ok(at.multiselect(key="runs_runs_selected").set_value([long_id]).run())
    ok(at.radio(key="runs_metric").set_value("val_perplexity").run())
    spec = figure(at, "runs_ppl")
    assert spec["data"][0]["x"] == [11, 22] and spec["layout"]["xaxis"].get("dtick") is None


PAGES = [f"pages/{p}.py" for p in ("data", "train", "generate", "runs", "book", "inside", "tune")]


def test_every_pages_default_link_holds_its_model_and_never_none(home, corpus):
    """Item 14: a new visitor's address on every page holds only what differs from the defaults: nothing,
    except the model Generate and Inside picked (pinned, item 7); the Data page's minibatch field, cleared,
    writes nothing (it once wrote ?minibatch=None)."""
    run_id = record_run(corpus, "the only run", TINY)
    at = ok(AppTest.from_file(APP, default_timeout=60).run())
    assert dict(at.query_params) == {}  # Home
    for page in PAGES:
        ok(at.switch_page(page).run())
        pinned = {"run": run_id, "epoch": "2"} if page in ("pages/generate.py", "pages/inside.py") else {}
        assert dict(at.query_params) == pinned, (page, dict(at.query_params))
    ok(at.switch_page("pages/data.py").run())
    ok(at.number_input(key="data_batch_no").set_value(None).run())
    assert "None" not in str(dict(at.query_params)) and not at.error


@pytest.mark.parametrize("page, seed", [("train", "1e23"), ("generate", "12.5")])
def test_a_seed_in_a_link_that_is_not_a_whole_number_says_what_a_seed_must_be(home, page, seed):
    at = ok(AppTest.from_file(APP, default_timeout=60).run())
    at.query_params["seed"] = seed
    ok(at.switch_page(f"pages/{page}.py").run())
    warned = [w for w in plain(at.warning) if "seed" in w]
    assert warned and "must be a whole number" in warned[0] and "invalid literal" not in warned[0], warned


def test_one_name_cap_for_the_app_and_the_cli(home, corpus, tmp_path):
    MAX_NAME = runner.MAX_NAME  # noqa: N806 (the library's constant)
    run_id = record_run(corpus, "short", TINY)
    at = ok(AppTest.from_file(APP, default_timeout=60).run())
    at.switch_page("pages/runs.py").run()
    assert at.text_input(key=f"runs_name_{run_id}").proto.max_chars == MAX_NAME  # the field stops there
    at.text_input(key=f"runs_name_{run_id}").set_value("   ")
    ok(at.button(key="runs_rename").click().run())
    assert any(f"New name: a run's name must be 1 to {MAX_NAME} characters, not 0" in e for e in plain(at.error))
    assert home.run(run_id)["name"] == "short"

    args = [sys.executable, "-m", "charrnn", "train", "--name", "y" * (MAX_NAME + 1), "--epochs", "1"]
    cli = subprocess.run(args, capture_output=True, text=True, timeout=120, env={"CHARRNN_HOME": str(tmp_path)})
    assert cli.returncode == 2 and f"1 to {MAX_NAME} characters" in cli.stderr, cli.stderr
    assert len(cli.stderr.strip().splitlines()[-1]) <= 300


def test_the_demo_admits_every_checkpoint_it_can_train_and_refuses_a_larger_vocab(monkeypatch, home):
    """The largest model within the demo's caps (widest kind, cell and depth, the largest vocab), saved as a run
    saves it (with Adam's moments) and as a download (a 500-epoch history), is under the checkpoint cap; a text
    with more distinct characters than the cap is refused at Start, naming the field."""
    monkeypatch.setenv("CHARRNN_DEMO", "1")
    config = demo.largest_model()
    assert demo.check_caps({"num_hiddens": config.num_hiddens, "model": config.kind, "cell": config.cell}) == []
    vocab = Vocab.from_tokens(["<unk>", *(chr(0x100 + i) for i in range(config.vocab_size - 1))])
    model = make_model(config)
    adam = torch.optim.Adam(model.parameters())
    sum(p.sum() for p in model.parameters()).backward()
    adam.step()  # its two moments per weight now exist
    sample = "time traveller " * 4
    stats = dict(perplexity=1.5, tokens_per_sec=1e4, grad_norm=0.5, clipped=0.1, loss=0.4, val_perplexity=1.4)
    history = [EpochStats(e, elapsed=float(e), sample=sample, **stats) for e in range(1, 501)]
    train_config = TrainConfig(num_hiddens=config.num_hiddens, model=config.kind, cell=config.cell, optimizer="adam")
    ckpt = make_checkpoint(model, vocab, train_config, {"name": "x" * 200}, history, optimizer_state=adam.state_dict())
    buffer = io.BytesIO()
    torch.save({**ckpt, "epoch": 500, "loader_state": {"offset": 3, "order": list(range(1500))}}, buffer)
    size = buffer.getbuffer().nbytes
    assert size <= demo.DEMO_CAPS["checkpoint_bytes"], (size, demo.DEMO_CAPS["checkpoint_bytes"])
    demo.require_upload(size, "largest.pt", "checkpoint_bytes")  # admitted

    text = "".join(chr(0x100 + i) for i in range(300)) * 20  # 300 distinct characters
    wide = load_corpus(text.encode(), mode="raw", max_tokens=None, name="wide.txt")
    with pytest.raises(ValueError, match=r"Vocabulary \(distinct characters of the text\): at most 256"):
        runner.Runner().start(wide, TrainConfig(**TINY))


@pytest.mark.parametrize(
    "url, base_path, root",
    [
        ("http://h:8501/", "", "http://h:8501"),
        ("http://h:8501/train?minibatch=2", "", "http://h:8501"),
        ("https://h/charrnn/", "charrnn", "https://h/charrnn"),  # Home under a path: once /train?key= at the host
        ("https://h/charrnn/inside", "/charrnn/", "https://h/charrnn"),
    ],
)
def test_your_link_points_at_the_apps_own_root_even_under_a_path(url, base_path, root):
    from ui.visitor import app_root

    assert app_root(url, base_path) == root


def test_the_registry_keeps_a_runner_whose_run_ended_recently_however_long_nobody_looked(monkeypatch):
    """A run left alone for over an hour ends: its runner (and "your run" on the Train page, and a Book or Tune
    chain between two runs) must still be there on return; one idle for longer than that goes."""
    import ui.visitor as visitor

    clock = [1000.0]
    monkeypatch.setattr(visitor.time, "monotonic", lambda: clock[0])
    registry = visitor.Registry()
    first = registry.runner("k" * 32)
    clock[0] += 2 * visitor.IDLE_S  # nobody looked for two hours...
    first.idle_since = clock[0] - 10  # ...while its run trained, until 10 s ago
    assert registry.runner("k" * 32) is first
    clock[0] += visitor.IDLE_S + 1
    assert registry.runner("k" * 32) is not first
