"""`--eval-every` as 1/k of an epoch (issue 22): k held-out evaluations an epoch, the last at its end, for the
curves and for a pruner (a whole-text epoch is ~30 of the book's). Training is unchanged by them; the best
checkpoint and patience go by the epoch-end ones; the store, the charts, the CLI and Tune carry them."""

import optuna
import pytest
from test_hostile_cli import assert_refused, cli
from test_tune import STORE, TINY, parse

from charrnn.batches import SeqDataLoader
from charrnn.cli import tune
from charrnn.evaluate import check_cadence, heldout_perplexity, mid_epoch_marks, report_step
from charrnn.runs.recorder import train_recorded
from charrnn.runs.store import RunStore
from charrnn.train import TrainConfig, train
from ui.views import held_out_points, history_figure, runs_figure

SMALL = dict(num_epochs=2, num_hiddens=16, batch_size=4, num_steps=8, device="cpu", model="concise", cell="gru")


@pytest.mark.parametrize("every", [1, 3, 10.0, 0.5, 0.25, 0.1, 0.01])
def test_a_whole_number_of_epochs_or_one_kth_is_a_cadence(every):
    check_cadence(every)
    TrainConfig(eval_every=every).validate()


@pytest.mark.parametrize("every", [0, 0.3, 1.5, -1, float("nan"), True, 0.001, "1"])
def test_any_other_cadence_is_refused_naming_the_field_and_the_forms(every):
    with pytest.raises(ValueError, match=r"eval_every must be a whole number of epochs, or 1/k of one \(0.5"):
        TrainConfig(eval_every=every).validate()


def test_the_marks_split_an_epoch_into_k_even_parts():
    assert mid_epoch_marks(0.25, 100) == {25, 50, 75}  # the 4th is the epoch's end
    assert mid_epoch_marks(0.5, 7) == {4}  # round(3.5): as even as whole minibatches allow
    assert mid_epoch_marks(0.1, 3) == {1, 2}  # fewer minibatches than evaluations: one after each
    assert mid_epoch_marks(2, 100) == mid_epoch_marks(1, 100) == set()
    assert [report_step(p, 0.25) for p in (0.25, 0.5, 1, 1.25)] == [1, 2, 4, 5]
    assert report_step(6, 2) == 6  # whole epochs: the step is the epoch, as before


def test_evaluations_inside_an_epoch_change_nothing_of_the_training_and_are_the_models_figures(corpus):
    text, val = corpus.corpus[:1600], corpus.corpus[1600:]
    config = TrainConfig(**SMALL, dropout=0.3, eval_every=0.25)  # dropout: evaluating must leave its RNG alone
    quarter = train(text, corpus.vocab, config, val=val)
    whole = train(text, corpus.vocab, TrainConfig(**{**config.__dict__, "eval_every": 1}), val=val)
    assert [h.perplexity for h in quarter.history] == [h.perplexity for h in whole.history]
    assert [h.val_perplexity for h in quarter.history] == [h.val_perplexity for h in whole.history]
    per_epoch = len(SeqDataLoader(text, 4, 8, "sequential", seed=0))
    assert [[x for x, _ in h.val_points] for h in quarter.history] == [
        [e + n / per_epoch for n in sorted(mid_epoch_marks(0.25, per_epoch))] for e in (0, 1)
    ]
    # The first point is the held-out figure of the model after its first quarter epoch's minibatches.
    asked = iter(range(10**6))
    first = round(per_epoch / 4)
    stopped = train(text, corpus.vocab, config, val=val, should_stop=lambda: next(asked) == first)
    assert quarter.history[0].val_points[0][1] == heldout_perplexity(stopped.model, val, "cpu")


def test_the_store_and_the_charts_keep_every_point(home, corpus):
    config = TrainConfig(**SMALL, eval_every=0.5, val_tokens=200)
    run_id, result = train_recorded(home, corpus, config)
    stored = home.history(run_id)
    assert [r["val_points"] for r in stored] == [h.val_points for h in result.history] != [[], []]
    points = held_out_points(stored)
    assert [x for x, _ in points] == [stored[0]["val_points"][0][0], 1, stored[1]["val_points"][0][0], 2]
    assert held_out_points(result.history) == points
    assert list(history_figure(result.history).data[1].x) == [x for x, _ in points]
    overlay = runs_figure([home.run(run_id)], {run_id: "r"}, "val_perplexity")
    assert list(overlay.data[0].y) == [y for _, y in points]


def test_the_cli_prints_each_epochs_figures_and_refuses_a_third(home, capsys, time_machine_path):
    args = ["train", "--num-hiddens", "16", "--max-tokens", "2000", "--batch-size", "4", "--num-steps", "8"]
    code, out, err = cli(capsys, *args, "--epochs", "2", "--eval-every", "0.25", "--device", "cpu")
    assert code == 0, err
    lines = [line for line in out.splitlines() if line.startswith("epoch")]
    assert len(lines) == 2 and all(line.split("held-out ")[1].count(", ") == 3 for line in lines), out
    assert_refused(*cli(capsys, "train", "--eval-every", "0.3")[::2], "--eval-every: must be a whole number of epochs")


def test_a_pruner_gets_every_evaluation_at_its_own_step(tmp_path, capsys, monkeypatch, time_machine_path):
    monkeypatch.setenv("CHARRNN_HOME", str(tmp_path / "home"))
    storage = STORE.format(tmp=tmp_path)
    argv = ["--study", "quarters", "--storage", storage, "--trials", "1", "--epochs", "2", "--json"]
    at = TINY.index("--eval-every") + 1
    fine = [*TINY[:at], "0.25", *TINY[at + 1 :]]
    assert tune.run(parse(*argv, "--space", "lr=0.5:4:log", *fine)) == 0
    (trial,) = optuna.load_study(study_name="quarters", storage=storage).trials
    assert sorted(trial.intermediate_values) == list(range(1, 9))  # 4 an epoch, over 2 epochs
    assert RunStore().run(trial.user_attrs["run_id"])["config"]["eval_every"] == 0.25
