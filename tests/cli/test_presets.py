"""Presets (issue 22): named recipes fill the settings, and a flag given beside one overrides it."""

import pytest

from charrnn.book import CHAPTER_9, PRESETS, preset
from charrnn.cli import bench
from charrnn.cli.flags import apply_preset
from charrnn.cli.parser import build_parser
from charrnn.train import TrainConfig


def parsed(*argv):
    argv = ["train", *argv]
    args = build_parser(bench.add_arguments).parse_args(argv)
    if args.preset:
        apply_preset(args, argv)
    return args


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_is_a_valid_recipe(name):
    TrainConfig(**preset(name)).validate()


def test_the_book_presets_are_the_books_runs():
    assert preset("book-rnn") == {}  # 8.5's recipe: the defaults
    deep = next(e for e in CHAPTER_9 if e.name.startswith("deep"))
    assert preset("book-deep-lstm") == deep.overrides
    args = parsed("--preset", "book-deep-lstm")
    assert (args.model, args.cell, args.num_layers, args.lr, args.num_hiddens) == ("concise", "lstm", 2, 2.0, 256)


@pytest.mark.parametrize("flag", [["--lr", "0.5"], ["--lr=0.5"]])
def test_a_flag_beside_a_preset_overrides_it(flag):
    args = parsed("--preset", "whole-text", *flag)
    assert (
        args.lr == 0.5
        and args.max_tokens == 0
        and args.optimizer == "adam"
        and args.epochs == preset("whole-text")["num_epochs"]
    )
    assert parsed(*flag, "--preset", "whole-text").lr == 0.5  # before or after: given is given


def test_an_unknown_preset_is_one_line(capsys):
    with pytest.raises(SystemExit):
        parsed("--preset", "gpt")
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "argument --preset: invalid choice: 'gpt'" in err[0]
    with pytest.raises(ValueError, match="preset must be one of book-rnn"):
        preset("gpt")


def test_the_train_pages_picker_fills_every_field_and_says_what_the_fields_hold(
    time_machine_path, tmp_path, monkeypatch
):
    """The picker at the top of Train: "Fill the fields" sets every field from the picked preset (the device
    stays), the settings line and the caption name it, a field changed after it makes them "your settings",
    and book-rnn brings the recipe back."""
    import re

    from support import app, ok

    def line() -> str:  # the settings line, as the visitor reads it (the page escapes Markdown)
        return re.sub(r"\\(.)", r"\1", at.caption[0].value)

    def holds() -> str:
        return next(c.value for c in at.caption if c.value.startswith("The fields hold"))

    monkeypatch.setenv("CHARRNN_HOME", str(tmp_path))
    at = app().switch_page("pages/train.py").run()
    assert "Settings: the book's recipe." in line() and holds() == "The fields hold the book-rnn preset."
    at.selectbox(key="train_preset").set_value("whole-text").run()
    assert ok(at).session_state["hp_num_hiddens"] == TrainConfig().num_hiddens  # a pick alone changes nothing
    at.button(key="train_preset_fill").click().run()
    ok(at)
    want = {**TrainConfig().__dict__, **preset("whole-text")}
    assert all(at.session_state[f"hp_{k}"] == want[k] for k in preset("whole-text"))
    assert at.number_input(key="train_hp_num_hiddens").value == 512  # the widgets show it
    assert at.selectbox(key="train_hp_optimizer").value == "adam"
    assert "Settings: the whole-text preset." in line() and holds() == "The fields hold the whole-text preset."
    at.number_input(key="train_hp_lr").set_value(0.001).run()
    assert holds() == "The fields hold your settings." and "Settings: the book's recipe but " in line()
    at.selectbox(key="train_preset").set_value("book-rnn").run()
    at.button(key="train_preset_fill").click().run()
    recipe = {k: v for k, v in TrainConfig().__dict__.items() if k not in ("device", "prefix", "predict_every")}
    assert all(ok(at).session_state[f"hp_{k}"] == v for k, v in recipe.items())
    assert "Settings: the book's recipe." in line()


def test_a_field_typed_in_the_same_rerun_as_a_fill_raises_nothing(time_machine_path, tmp_path, monkeypatch):
    """A field's change and "Fill the fields" arriving together (a fast user, a slow server): the fill drops
    the fields' widget state, so the field's own callback must find its key gone and let the fill stand (it
    raised KeyError in the app's server log, seen in CI)."""
    from support import app, ok

    monkeypatch.setenv("CHARRNN_HOME", str(tmp_path))
    at = app().switch_page("pages/train.py").run()
    at.number_input(key="train_hp_max_tokens").set_value(5000)
    at.selectbox(key="train_preset").set_value("whole-text")
    at.button(key="train_preset_fill").click().run()
    assert ok(at).session_state["hp_max_tokens"] in (0, 5000)
    assert at.session_state["hp_num_hiddens"] == 512 and at.session_state["hp_optimizer"] == "adam"
