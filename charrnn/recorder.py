"""Training that lasts: `train` recorded in the run store, checkpointed, resumable.

Every epoch goes to the store as it finishes; a checkpoint (atomic: temp file, fsync, rename) is
written every `checkpoint_every` epochs and at the end. A checkpoint carries the iterator's state,
so a resumed run continues exactly where the checkpoint left it: same offsets, same shuffles.
"""

import math

from charrnn.batches import SeqDataLoader
from charrnn.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from charrnn.device import resolve_device
from charrnn.store import RunStore
from charrnn.train import TrainConfig, TrainResult, build_model, train


def check_compatible(ckpt: dict, vocab, config: TrainConfig, name: str) -> None:
    """Refuse a checkpoint whose vocab or shapes differ from the run it should continue."""
    if list(ckpt["vocab"]) != list(vocab.idx_to_token):
        raise CheckpointError(f"{name} was trained on another vocab ({len(ckpt['vocab'])} tokens, not {len(vocab)}).")
    hidden = ckpt["model_config"]["num_hiddens"]
    if hidden != config.num_hiddens:
        raise CheckpointError(f"{name} has num_hiddens {hidden}, but the run asks for {config.num_hiddens}.")


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
) -> tuple[str, TrainResult]:
    """Train on a `Corpus` as `train` does, recording the run; `resume` continues a run by id.

    `on_start(run_id)` is called once the run is in the store. Returns (run id, result).
    """
    if not isinstance(checkpoint_every, int) or checkpoint_every < 1:
        raise ValueError(f"checkpoint_every must be a positive integer, not {checkpoint_every!r}")
    config = config.validate()
    device = resolve_device(config.device)
    elapsed_before = 0.0  # a resumed run's clock continues from its checkpoint
    if resume is not None:
        run = store.run(resume)
        if run["status"] == "running":
            raise ValueError(f"run {resume} is still running; stop it before resuming")
        if run["status"] == "finished":
            raise ValueError(f"run {resume} already finished its epochs; train again to go further")
        last = store.last_checkpoint(resume)
        if last is None:
            raise ValueError(f"run {resume} has no checkpoint to resume from; train it again instead")
        config = TrainConfig.from_dict({**run["config"], "device": config.device}).validate()
        model, _, ckpt = load_checkpoint(last["path"], device)
        check_compatible(ckpt, corpus.vocab, config, last["path"])
        model.train()
        start_epoch = int(ckpt["epoch"])
        loader = SeqDataLoader(corpus.corpus, config.batch_size, config.num_steps, config.sampling, config.seed, device)
        loader.load_state_dict(ckpt["loader_state"])
        elapsed_before = next((e["elapsed"] for e in store.history(resume) if e["epoch"] == start_epoch), 0.0) or 0.0
        store.resume_run(resume, start_epoch)
        run_id = resume
    else:
        model, start_epoch = build_model(len(corpus.vocab), config), 0
        loader = SeqDataLoader(corpus.corpus, config.batch_size, config.num_steps, config.sampling, config.seed, device)
        run_id = store.create_run(config, corpus.fingerprint(), str(device), name)
    if on_start is not None:
        on_start(run_id)
    saved = {"epoch": start_epoch}  # the newest epoch that has a checkpoint
    good = {}  # the newest finite epoch: its weights and iterator state, for a checkpoint at the end

    def save(epoch: int, state_dict, loader_state) -> None:
        path = store.checkpoint_path(run_id, epoch)
        save_checkpoint(
            path,
            model,
            corpus.vocab,
            config,
            corpus.fingerprint(),
            store.history(run_id),
            state_dict=state_dict,
            epoch=epoch,
            loader_state=loader_state,
            run_id=run_id,
        )
        store.add_checkpoint(run_id, epoch, path)
        saved["epoch"] = epoch

    def record(stats):
        stats.elapsed += elapsed_before
        store.add_epoch(run_id, stats)
        if math.isfinite(stats.perplexity):  # a diverged epoch never replaces the last good checkpoint
            if stats.epoch % checkpoint_every == 0 or stats.epoch == config.num_epochs:
                save(stats.epoch, None, loader.state_dict())
            else:  # kept (a copy on the device, no sync) in case the run stops before the next checkpoint
                state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                good.update(epoch=stats.epoch, state=state, loader_state=loader.state_dict())
        if on_epoch is not None:
            on_epoch(stats)

    try:
        result = train(
            corpus.corpus,
            corpus.vocab,
            config,
            on_epoch=record,
            should_stop=should_stop,
            model=model,
            start_epoch=start_epoch,
            loader=loader,
        )
    except BaseException as e:
        store.finish(run_id, "failed", f"{type(e).__name__}: {e}")
        raise
    if good and good["epoch"] > saved["epoch"]:  # stopped or diverged between checkpoints
        save(good["epoch"], good["state"], good["loader_state"])
    if result.diverged:
        store.finish(run_id, "diverged", f"the perplexity became infinite in epoch {result.history[-1].epoch}")
    elif result.stopped:
        store.finish(run_id, "stopped", "stopped by the user")
    else:
        store.finish(run_id, "finished")
    return run_id, result
