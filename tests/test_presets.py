"""Presets (issue 22): named recipes fill the settings, and a flag given beside one overrides it."""

import pytest

from charrnn import bench
from charrnn.parser import apply_preset, build_parser
from charrnn.presets import PRESETS, preset
from charrnn.reproduce import CHAPTER_9
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


def test_the_train_pages_picker_fills_every_field_and_follows_the_form(time_machine_path, tmp_path, monkeypatch):
    """The picker at the top of Train: a pick fills the fields (the device stays), the settings line names
    it, a field changed after it makes it "your settings", and book-rnn brings the recipe back."""
    import re

    from support import app, ok

    def line() -> str:  # the settings line, as the visitor reads it (the page escapes Markdown)
        return re.sub(r"\\(.)", r"\1", at.caption[0].value)

    monkeypatch.setenv("CHARRNN_HOME", str(tmp_path))
    at = app().switch_page("pages/train.py").run()
    picker = at.selectbox(key="train_preset")
    assert picker.value == "book-rnn" and "Settings: the book's recipe." in line()
    picker.set_value("whole-text").run()
    ok(at)
    want = {**TrainConfig().__dict__, **preset("whole-text")}
    assert all(at.session_state[f"hp_{k}"] == want[k] for k in preset("whole-text"))
    assert at.number_input(key="train_hp_num_hiddens").value == 512  # the widgets show it
    assert at.selectbox(key="train_hp_optimizer").value == "adam"
    assert "Settings: the whole-text preset." in line()
    at.number_input(key="train_hp_lr").set_value(0.001).run()
    assert ok(at).selectbox(key="train_preset").value == "your settings"
    assert "Settings: the book's recipe but " in line()
    at.selectbox(key="train_preset").set_value("book-rnn").run()
    recipe = {k: v for k, v in TrainConfig().__dict__.items() if k not in ("device", "prefix", "predict_every")}
    assert all(ok(at).session_state[f"hp_{k}"] == v for k, v in recipe.items())
    assert "Settings: the book's recipe." in line()
