"""Training that lasts: `train` recorded in the run store, checkpointed, resumable.

Every epoch goes to the store as it finishes; a checkpoint (its bytes, in the database) is kept every
`checkpoint_every` epochs, at the end, and at each new best held-out epoch. A checkpoint carries the iterator's state,
so a resumed run continues exactly where the checkpoint left it: same offsets, same shuffles.
Run-store checkpoints hold no history (the store has it): a long run's checkpoints stay the size of the model.
"""

import copy
import io
import math
import time

from charrnn.batches import SeqDataLoader
from charrnn.data import split_heldout
from charrnn.device import resolve_device
from charrnn.models import ModelConfig, mixture
from charrnn.runs import spool
from charrnn.runs.checkpoint import CheckpointError, describe, load_checkpoint, make_checkpoint, serialized
from charrnn.runs.database import StoreUnreachable
from charrnn.runs.schema import training_elsewhere
from charrnn.runs.spool import Outbox
from charrnn.runs.store import STOP_POLL, DamagedCheckpoint, RunStore
from charrnn.step import Trainer
from charrnn.train import TrainConfig, TrainResult, build_model, train


def default_name(config: TrainConfig, when: float | None = None) -> str:
    """What a run is, as its name until renamed: cell, layers x width, lr and the time it started,
    e.g. 'rnn-512 lr1 14:03', 'lstm-2x256 lr2 09:30', 'concise gru-256 lr0.5 17:45'."""
    layers = f"{config.num_layers}x" if config.num_layers > 1 else ""
    kind = "concise " if config.model == "concise" else ""
    clock = time.strftime("%H:%M", time.localtime(when))
    return f"{kind}{config.cell}-{layers}{config.num_hiddens} lr{config.lr:g} {clock}"


def check_compatible(ckpt: dict, vocab, config: TrainConfig, name: str) -> None:
    """Refuse a checkpoint whose vocab or shapes differ from the run it should continue."""
    if list(ckpt["vocab"]) != list(vocab.idx_to_token):
        raise CheckpointError(f"{name} was trained on another vocab ({len(ckpt['vocab'])} tokens, not {len(vocab)}).")
    saved = ModelConfig(**ckpt["model_config"])  # read_checkpoint checked its fields; old ones are a 1-layer rnn
    wanted = config.model_config(len(vocab))
    if (saved.kind, saved.cell, saved.num_layers) != (wanted.kind, wanted.cell, wanted.num_layers):
        raise CheckpointError(f"{name} holds {describe(saved)} model, but the run asks for {describe(wanted)}.")
    if saved.num_hiddens != config.num_hiddens:
        raise CheckpointError(f"{name} has num_hiddens {saved.num_hiddens}, but the run asks for {config.num_hiddens}.")


def load_stored(store: RunStore, run_id: str, epoch: int, device="cpu"):
    """(model, vocab, ckpt) of the run's checkpoint of `epoch`, its bytes read from the store and checked against
    their SHA-256; `ckpt["source"]` names it in messages. CheckpointError or DamagedCheckpoint when it cannot
    be loaded, ValueError when there is none."""
    source = io.BytesIO(store.checkpoint_bytes(run_id, epoch))
    source.name = f"run {run_id}'s checkpoint of epoch {epoch}"
    model, vocab, ckpt = load_checkpoint(source, device)
    ckpt.setdefault("epoch", epoch)
    ckpt["source"] = source.name
    return model, vocab, ckpt


def load_run_checkpoint(store: RunStore, run_id: str, device="cpu"):
    """(model, vocab, ckpt, note) from the run's newest checkpoint that loads, trying newer ones first.

    A checkpoint that is refused (CheckpointError: truncated, crafted; DamagedCheckpoint: its bytes no longer
    match their SHA-256) is skipped, and `note` says so ("the newest checkpoint (epoch 40) is unreadable (...);
    using epoch 30"); None when the newest was used. ValueError when none loads.
    """
    store.run(run_id)  # "no run with id ..." rather than "no checkpoint"
    skipped = []  # (epoch, why) of the newer checkpoints that could not be used
    for row in reversed(store.checkpoints(run_id)):
        try:
            model, vocab, ckpt = load_stored(store, run_id, row["epoch"], device)
        except (CheckpointError, DamagedCheckpoint) as e:
            skipped.append((row["epoch"], f"unreadable ({e})"))
            continue
        note = None
        if skipped:
            epoch, why = skipped[0]
            note = f"the newest checkpoint (epoch {epoch}) is {why}; using epoch {row['epoch']}"
        return model, vocab, ckpt, note
    if not skipped:
        raise ValueError(f"run {run_id} has no checkpoint yet")
    epoch, why = skipped[0]
    raise ValueError(f"run {run_id} has no checkpoint that loads (the newest, epoch {epoch}, is {why}); train again")


def check_resumable(store: RunStore, run_id: str, num_epochs: int | None = None) -> tuple[dict, int]:
    """(run, the total epochs to train to) for resuming `run_id`, or ValueError saying why it cannot be.

    Reads only the store (no checkpoint is loaded): a caller checks this before loading any text.
    `num_epochs` is the new total; None keeps the run's own.
    """
    run = store.run(run_id)
    if run["status"] == "running":
        raise ValueError(training_elsewhere(run))
    last = store.last_checkpoint(run_id)
    if last is None:
        raise ValueError(f"run {run_id} has no checkpoint to resume from; train it again instead")
    total = num_epochs if num_epochs is not None else run["config"]["num_epochs"]
    if total <= last["epoch"]:
        asked = "was asked for" if num_epochs is not None else f"is run {run_id}'s own"
        raise ValueError(
            f"num_epochs {total} ({asked}) is not above epoch {last['epoch']}, where run {run_id}'s checkpoint "
            f"is; give num_epochs above {last['epoch']} to train it further"
        )
    return run, total


def run_checkpoint_bytes(
    run_id: str, model, corpus, config, epoch: int, loader_state, state_dict=None, optimizer_state=None
) -> bytes:
    """The checkpoint of epoch `epoch` of a run, as the bytes the store keeps (the caller records them:
    `store.add_checkpoint`): `model`'s weights (or `state_dict`, a copy of them taken earlier) with the iterator's
    state (and Adam's, if any), so that the run can be resumed there."""
    extra = {"optimizer_state": optimizer_state} if optimizer_state is not None else {}
    ckpt = make_checkpoint(
        model,
        corpus.vocab,
        config,
        corpus.fingerprint(),
        state_dict=state_dict,
        epoch=epoch,
        loader_state=loader_state,
        run_id=run_id,
        **extra,
    )
    return serialized(ckpt)


def train_recorded(
    store: RunStore,
    corpus,
    config: TrainConfig,
    on_epoch=None,
    should_stop=None,
    checkpoint_every: int = 50,
    name: str | None = None,
    resume: str | None = None,
    on_start=None,
    num_epochs: int | None = None,
    on_note=None,
) -> tuple[str, TrainResult]:
    """Train on a `Corpus` as `train` does, recording the run; `resume` continues a run by id.

    A resumed run keeps its own config but `config.device`, and trains to `num_epochs` in all (None:
    its own). `on_start(run_id)` is called once the run is in the store; `on_note(text)` when a resumed
    run falls back to an older checkpoint. Returns (run id, result). Ctrl-C (KeyboardInterrupt) during
    training checkpoints the last finished epoch and marks the run "interrupted", so it can be resumed.
    """
    if not isinstance(checkpoint_every, int) or checkpoint_every < 1:
        raise ValueError(f"checkpoint_every must be a positive integer, not {checkpoint_every!r}")
    config = config.validate()
    device = resolve_device(config.device)
    elapsed_before = 0.0  # a resumed run's clock continues from its checkpoint
    optimizer_state = None
    if resume is not None:
        config, model, split, loader, start_epoch, optimizer_state = _resume(
            store, resume, corpus, config, num_epochs, device, on_note
        )
        elapsed_before = next((e["elapsed"] for e in store.history(resume) if e["epoch"] == start_epoch), 0.0) or 0.0
        store.resume_run(resume, start_epoch, config.num_epochs)
        run_id = resume
    else:
        model, start_epoch = build_model(len(corpus.vocab), config), 0
        split = split_heldout(corpus, config.val_tokens)
        mixture.attach(model, split.train)  # an n-gram the text cannot give is refused before the run exists
        loader = SeqDataLoader(split.train, config.batch_size, config.num_steps, config.sampling, config.seed, device)
        run_id = store.create_run(config, corpus.fingerprint(), str(device), name or default_name(config))
    if on_start is not None:
        on_start(run_id)
    trainer = Trainer(model.to(device), config, optimizer_state=optimizer_state)
    saved = {"epoch": start_epoch}  # the newest epoch that has a checkpoint
    kept = [e["val_perplexity"] for e in store.history(run_id) if e["val_perplexity"] is not None]
    best = {"val": min(kept, default=math.inf), "only": None}  # the best held-out figure; an epoch kept for it alone
    good = {}  # the newest finite epoch: its weights and iterator state, for a checkpoint at the end

    outbox = Outbox()  # the store's writes while training: they wait out a server's restart

    def save(epoch: int, state_dict, loader_state, optimizer=None) -> None:
        optimizer = optimizer if state_dict is not None else trainer.optimizer_state()
        data = run_checkpoint_bytes(run_id, model, corpus, config, epoch, loader_state, state_dict, optimizer)
        outbox.send(store.add_checkpoint, run_id, epoch, data)
        saved["epoch"] = epoch

    def save_good() -> None:  # stopped or diverged between checkpoints
        if good and good["epoch"] > saved["epoch"]:
            save(good["epoch"], good["state"], good["loader_state"], good["optimizer"])

    def keep_best(stats) -> None:
        """A new best held-out figure gets a checkpoint of its own; the previous one kept only as the best goes."""
        if stats.val_perplexity is None or not stats.val_perplexity < best["val"]:
            return
        best["val"] = stats.val_perplexity
        if saved["epoch"] != stats.epoch:
            save(stats.epoch, None, loader.state_dict())
            if best["only"] is not None:
                outbox.send(store.delete_checkpoint, run_id, best["only"])
            best["only"] = stats.epoch
        else:
            best["only"] = None

    def record(stats):
        stats.elapsed += elapsed_before
        outbox.send(store.add_epoch, run_id, stats)
        if math.isfinite(stats.perplexity):  # a diverged epoch never replaces the last good checkpoint
            if stats.epoch % checkpoint_every == 0 or stats.epoch == config.num_epochs:
                save(stats.epoch, None, loader.state_dict())
            else:  # kept (a copy on the device, no sync) in case the run stops before the next checkpoint
                state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                optimizer = copy.deepcopy(trainer.optimizer_state())
                good.update(epoch=stats.epoch, state=state, loader_state=loader.state_dict(), optimizer=optimizer)
            keep_best(stats)
        if on_epoch is not None:
            on_epoch(stats)

    asked = {"next": time.monotonic() + STOP_POLL, "by": None}  # a stop asked through the database (any machine)

    def stop_now() -> bool:
        if should_stop is not None and should_stop():
            return True
        if asked["by"] is None and time.monotonic() >= asked["next"]:  # a look every STOP_POLL s, not per minibatch
            asked["next"] = time.monotonic() + STOP_POLL
            try:
                asked["by"] = "database" if store.stop_asked(run_id) else None
            except StoreUnreachable:  # asked again in STOP_POLL seconds; the run trains on meanwhile
                pass
        return asked["by"] is not None

    try:
        try:
            result = train(
                split.train,
                corpus.vocab,
                config,
                on_epoch=record,
                should_stop=stop_now,
                model=model,
                start_epoch=start_epoch,
                loader=loader,
                val=split.val,
                trainer=trainer,
                best_val=best["val"],
            )
        except KeyboardInterrupt:  # the finished epochs are worth keeping: this run can be resumed
            save_good()
            outbox.send(store.finish, run_id, "interrupted", "interrupted (Ctrl-C) during an epoch")
            raise
        except StoreUnreachable:
            raise
        except BaseException as e:
            outbox.send(store.finish, run_id, "failed", f"{type(e).__name__}: {e}")
            raise
        save_good()
        outbox.send(store.finish, run_id, *_ending(result, config, asked["by"], best["val"]))
        outbox.flush(wait=True)  # a server restarting at the end: the last records wait for it (up to the limit)
    except StoreUnreachable as e:  # away past the limit: what did not reach it is kept on this machine's disk
        kept = spool.keep(store, run_id, outbox.pending)
        if kept is None:
            raise
        raise StoreUnreachable(
            f"{e}. The run's last records and checkpoints are kept in {kept}: the next command on this machine "
            f"that opens the run store reads them in, and `python -m charrnn train --resume {run_id}` goes on"
        ) from e
    return run_id, result


def _ending(result: TrainResult, config: TrainConfig, asked_by, best_val: float) -> tuple[str, str]:
    """The run's final status and reason."""
    if result.diverged:
        return "diverged", f"the perplexity became infinite in epoch {result.history[-1].epoch}"
    if result.stopped:
        by = "stopped from the run store (runs stop, or Stop on another machine)" if asked_by else "stopped by the user"
        return "stopped", by
    if result.patience_ran_out:
        why = f"no better held-out perplexity in {config.patience} evaluations (best {best_val:.3f})"
        return "finished", f"stopped early: {why}"
    return "finished", ""


def _resume(store: RunStore, run_id: str, corpus, config: TrainConfig, num_epochs, device, on_note):
    """(config, model, split, loader, start epoch) of a run continued from its newest checkpoint that loads.
    A run recorded before held-out evaluation existed (no val_tokens in its config) keeps none, so it
    trains on the same chars as it began."""
    run, total = check_resumable(store, run_id, num_epochs)
    own = {"val_tokens": 0, **run["config"], "device": config.device, "num_epochs": total}
    config = TrainConfig.from_dict(own).validate()
    model, _, ckpt, note = load_run_checkpoint(store, run_id, device)
    if note is not None and on_note is not None:
        on_note(note)
    check_compatible(ckpt, corpus.vocab, config, ckpt["source"])
    start_epoch = int(ckpt["epoch"])
    if start_epoch >= total:  # an older checkpoint than the store's newest never gets here; a crafted one may
        raise ValueError(f"num_epochs {total} is not above epoch {start_epoch} of {ckpt['source']}")
    if "loader_state" not in ckpt:
        raise CheckpointError(
            f"{ckpt['source']} has no iterator state; it cannot be resumed exactly; train again instead"
        )
    split = split_heldout(corpus, config.val_tokens)
    loader = SeqDataLoader(split.train, config.batch_size, config.num_steps, config.sampling, config.seed, device)
    try:
        loader.load_state_dict(ckpt["loader_state"])
    except (KeyError, TypeError, ValueError, IndexError) as e:
        raise CheckpointError(
            f"{ckpt['source']} holds a damaged iterator state ({type(e).__name__}); train again instead"
        ) from e
    return config, model.train(), split, loader, start_epoch, ckpt.get("optimizer_state")
