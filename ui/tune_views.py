"""The Tune page's views of a study (any study of the storage, this session's or another worker's):
the picker, the live table of trials, Optuna's Plotly figures and the best trial's card, each beside the
5-gram yardstick: a counting model's held-out perplexity on the text the trials are judged on."""

import optuna
import pandas as pd
import streamlit as st

from charrnn.batches import SAMPLINGS
from charrnn.models import CELLS, KINDS
from charrnn.runs.store import RunStore
from charrnn.train import OPTIMIZERS, STATES
from charrnn.tune.space import TUNABLE, FieldError
from charrnn.tune.storage import storage_url, stored_settings, study_names, trial_rows
from ui.corpus import yardstick_for
from ui.display import error, eta_text, literal
from ui.state import bound, follow_switch, keep_valid
from ui.training import runner
from ui.tune import generate_from, shown, storage, storage_for, train_fully, tune_job


def studies() -> list[str]:
    return study_names(storage())


def load_study(name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=storage())


KNOWN_CHOICES = {*SAMPLINGS, *STATES, *KINDS, *CELLS, *OPTIMIZERS}
SHOWN_FIXED = ("lr", "optimizer", "weight_decay", "clip", "num_hiddens", "num_steps", "batch_size", "model", "cell")
SHOWN_FIXED += ("num_layers", "dropout", "max_tokens", "val_tokens", "eval_every")


def plain(study: optuna.Study) -> bool:
    """A study charrnn made, with our parameters and values only: its figures show nothing a stranger
    wrote (Plotly reads tags in labels). Any other study gets the table only (text, never markup)."""
    if "charrnn" not in study.user_attrs:
        return False
    return all(
        name in TUNABLE and (isinstance(value, (int, float)) or value in KNOWN_CHOICES)
        for t in study.get_trials(deepcopy=False)
        for name, value in t.params.items()
    )


def fixed_settings(settings: dict) -> dict:
    """What a study keeps fixed, from the settings stored with it (`stored_settings`, each read a database
    query: a view reads them once); empty for a study charrnn did not make."""
    fixed = settings.get("fixed")
    return fixed if isinstance(fixed, dict) else {}


def search_text(study: optuna.Study) -> str:
    """What the study searches and keeps fixed, from its stored settings, and who started it when a signed-in
    person did (its trials' runs show the same owner on the Runs page)."""
    settings = stored_settings(study) or {}
    fixed = fixed_settings(settings)
    kept = ", ".join(f"{k} {shown(fixed[k])}" for k in SHOWN_FIXED if isinstance(fixed.get(k), (int, float, str)))
    text = f"Space {settings.get('space', '?')}, {fixed.get('num_epochs', '?')} epochs per trial; fixed: {kept}."
    owner = study.user_attrs.get("owner")
    return text + (f" Started by {owner}." if isinstance(owner, str) and owner else "")


def yardsticks(study: optuna.Study) -> dict[int, float]:
    """max_tokens -> the 5-gram's held-out perplexity on the text the study's trials of that max_tokens
    are judged on (one entry unless the space varies max_tokens); empty when the study's text is not
    on this machine (an upload of another session, The Time Machine not downloaded yet)."""
    settings = stored_settings(study) or {}
    text, fixed = settings.get("text"), fixed_settings(settings)
    values = {t.params["max_tokens"] for t in study.get_trials(deepcopy=False) if "max_tokens" in t.params}
    values = values or {fixed.get("max_tokens")}
    if not isinstance(text, dict):
        return {}
    found = {n: yardstick_for({**text, "max_tokens": n}, fixed.get("val_tokens")) for n in sorted(values, key=str)}
    return {n: v for n, v in found.items() if isinstance(n, int) and v is not None}


def counting_text(counting: dict[int, float]) -> str:
    """The yardstick in words, e.g. "5-gram (counting): 5.18 on the same held-out text"."""
    if len(counting) == 1:
        return f"5-gram (counting): {next(iter(counting.values())):.2f} on the same held-out text."
    return "5-gram (counting), by max_tokens: " + ", ".join(f"{n}: {v:.2f}" for n, v in counting.items()) + "."


def trials_table(study: optuna.Study, counting: dict[int, float]) -> pd.DataFrame:
    """One row per trial: state, held-out perplexity (complete trials only) beside the 5-gram's on the
    same text, epochs run, the cell and layers it trained (searched or fixed), the other parameters searched."""
    fixed = fixed_settings(stored_settings(study) or {})
    rows = []
    for r in trial_rows(study):
        params = dict(r["params"])
        rows.append(
            {
                "best": "*" if r["best"] else "",
                "trial": r["number"],
                "state": r["state"],
                "held-out perplexity": r["value"],
                "5-gram": counting.get(params.get("max_tokens", fixed.get("max_tokens"))),
                "epochs": r["epochs"],
                "cell": params.pop("cell", fixed.get("cell")),
                "layers": params.pop("num_layers", fixed.get("num_layers")),
                **params,
                "run": r["run_id"] or "",
                "reason": r["reason"],
            }
        )
    return pd.DataFrame(rows)


FIGURES = {
    "tune_history": ("Optimisation history", optuna.visualization.plot_optimization_history),
    "tune_parallel": ("Parallel coordinates", optuna.visualization.plot_parallel_coordinate),
    "tune_importance": ("Parameter importances", optuna.visualization.plot_param_importances),
    "tune_intermediate": ("Held-out perplexity during each trial", optuna.visualization.plot_intermediate_values),
}


HELD_OUT = ("tune_history", "tune_intermediate")  # the figures whose y axis is the held-out perplexity


@st.cache_data(max_entries=16, show_spinner=False)
def _figure(key: str, url: str, name: str, version: tuple, counting: tuple = ()):
    """One of Optuna's figures, redrawn only when a trial changed (`version`): importances fit a model.
    A held-out figure gets a labelled line per 5-gram figure in `counting` ((max_tokens, value) pairs)."""
    study = optuna.load_study(study_name=name, storage=storage_for(url))
    fig = FIGURES[key][1](study)
    fig.update_layout(height=360, margin=dict(l=10, r=10, t=40, b=10))
    for max_tokens, value in counting if key in HELD_OUT else ():
        label = f"5-gram (counting){f', max_tokens {max_tokens}' if len(counting) > 1 else ''}: {value:.2f}"
        fig.add_hline(y=value, line_dash="dash", line_color="gray", annotation_text=label)
    return fig


def show_figures(study: optuna.Study, counting: dict[int, float]):
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    version = tuple((t.number, t.state.name, len(t.intermediate_values)) for t in trials)
    cols = st.columns(2)
    for i, (key, (title, _)) in enumerate(FIGURES.items()):
        with cols[i % 2]:
            st.caption(title)
            if key == "tune_importance" and len(complete) < 2:
                st.info(f"Importances need at least 2 complete trials ({len(complete)} so far).")
                continue
            try:
                fig = _figure(key, storage_url(), study.study_name, version, tuple(counting.items()))
            except (ValueError, RuntimeError) as e:  # e.g. importances of parameters that never varied
                st.info(literal(f"Not drawn yet: {e}"))
                continue
            st.plotly_chart(fig, key=key, config={"displaylogo": False})


def best_card(study: optuna.Study):
    """The best trial: its settings, its greedy sample, its best checkpoint, and what to do with it."""
    best = next((r for r in trial_rows(study) if r["best"]), None)
    if best is None:
        st.info("No trial has completed yet: the best one appears here.")
        return
    with st.container(border=True, key="tune_best"):
        st.subheader(f"Best: trial {best['number']}, held-out perplexity {best['value']:.3f}")
        st.code("\n".join(f"{k} = {v}" for k, v in best["params"].items()), language=None)
        store, run_id = RunStore(), best["run_id"]
        try:
            run = store.run(run_id)
        except (ValueError, TypeError):
            st.caption("Its run is in another machine's run store (the study is shared, runs are not).")
            return
        samples = [h["sample"] for h in store.history(run_id) if h.get("sample")]
        st.caption(literal(f"Run {run_id}: greedy continuation of {run['config'].get('prefix', '')!r}"))
        st.code(samples[-1] if samples else "(no sample recorded)", language=None)
        kept = store.best_checkpoint(run_id)
        st.caption(
            f"Generate uses its checkpoint of epoch {kept['epoch']}, its best held-out evaluation "
            f"({kept['val_perplexity']:.3f})."
            if kept
            else "It kept no checkpoint of its best evaluation: Generate uses its last."
        )
        c = st.columns(2)
        c[0].button("Generate from it", on_click=generate_from, args=(run_id,), key="tune_generate", type="primary")
        c[1].button("Train it fully", on_click=train_fully, args=(run["config"],), key="tune_train_fully")


def study_view(running: bool):
    """The study picker (every study of the storage; only this session's own has Stop) and the picked
    study's live table, figures and best trial, redrawn every 2 s while this session's search runs."""
    try:
        names = studies()
    except FieldError as e:  # the storage cannot be opened: the message says which and why
        error(f"Storage: {e}")
        return
    if not names:
        st.info("No study yet: choose what varies and press Start.")
        return
    own = tune_job().study
    keep_valid("tune_study", "tune", names)
    st.selectbox(
        "Study",
        names,
        format_func=lambda n: f"{n} (this session's)" if n == own else f"{n} (read-only)",
        **bound("tune_study", "tune"),
    )
    name = st.session_state["tune_study"]
    live = running and name == own

    @st.fragment(run_every=2.0 if live else None)
    def view():
        follow_switch()  # a button of the best-trial card below reruns only this fragment
        if live and not tune_job().running():
            st.rerun()  # the search ended: one full rerun stops the polling and frees the form
        study = load_study(name)
        st.caption(literal(search_text(study)))
        if live:
            snap = runner().snapshot()
            if snap.config is not None and snap.status in ("running", "queued"):
                st.caption(f"Trial training now: {snap.status}, {eta_text(snap.history, snap.config.num_epochs)}")
        counting = yardsticks(study)
        st.caption(literal(counting_text(counting)) if counting else "5-gram (counting): the study's text is not here.")
        st.dataframe(trials_table(study, counting), hide_index=True, key="tune_table")
        if plain(study):
            show_figures(study, counting)
        else:
            st.info("This study was not made by charrnn: only its table is shown.")
        best_card(study)

    view()
