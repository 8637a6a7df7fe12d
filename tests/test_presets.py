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
    assert args.lr == 0.5 and args.max_tokens == 0 and args.optimizer == "adam" and args.epochs == 60
    assert parsed(*flag, "--preset", "whole-text").lr == 0.5  # before or after: given is given


def test_an_unknown_preset_is_one_line(capsys):
    with pytest.raises(SystemExit):
        parsed("--preset", "gpt")
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "argument --preset: invalid choice: 'gpt'" in err[0]
    with pytest.raises(ValueError, match="preset must be one of book-rnn"):
        preset("gpt")
