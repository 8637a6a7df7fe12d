"""The CUDA-graph train step gives the eager step's losses (runs wherever CUDA exists)."""

import pytest
import torch

from charrnn.batches import SeqDataLoader
from charrnn.models import detach_state
from charrnn.step import Trainer
from charrnn.train import TrainConfig, build_model

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="the CUDA graph path needs a CUDA GPU")

NUM_MINIBATCHES = 40  # 5 epochs of the recipe


def run(corpus, vocab_size, sampling, cuda_graph, odd_every=0):
    """Losses of NUM_MINIBATCHES steps; every `odd_every`-th minibatch is cut to half the batch (another shape)."""
    config = TrainConfig(sampling=sampling, device="cuda")
    model = build_model(vocab_size, config).to("cuda")
    trainer = Trainer(model, config, cuda_graph=cuda_graph)
    loader = SeqDataLoader(corpus, config.batch_size, config.num_steps, sampling, seed=0, device="cuda")
    losses, state = [], None
    while len(losses) < NUM_MINIBATCHES:
        for X, Y in loader:
            if odd_every and len(losses) % odd_every == odd_every - 1:
                X, Y, state = X[:16], Y[:16], None  # a minibatch of another shape, from a fresh state
            if state is None or sampling == "random" or state[0].shape[0] != X.shape[0]:
                state = model.begin_state(X.shape[0], "cuda")
            else:
                state = detach_state(state)
            loss, _, _, state = trainer.step(X, Y, state)
            losses.append(loss)
    return torch.stack(losses[:NUM_MINIBATCHES]).tolist(), trainer


@pytest.mark.parametrize("sampling", ["sequential", "random"])
def test_graphed_step_matches_eager(recipe_corpus, sampling):
    eager, _ = run(recipe_corpus.corpus, len(recipe_corpus.vocab), sampling, cuda_graph=False)
    graphed, trainer = run(recipe_corpus.corpus, len(recipe_corpus.vocab), sampling, cuda_graph=True)
    assert trainer.graph.graph is not None and not trainer.graph.failed
    assert trainer.graph.replays == NUM_MINIBATCHES - trainer.graph.WARMUP
    assert graphed == pytest.approx(eager, rel=1e-5)
    assert eager[-1] < eager[0]  # it learns


def test_other_shapes_fall_back_to_eager(recipe_corpus):
    eager, _ = run(recipe_corpus.corpus, len(recipe_corpus.vocab), "sequential", cuda_graph=False, odd_every=7)
    graphed, trainer = run(recipe_corpus.corpus, len(recipe_corpus.vocab), "sequential", cuda_graph=True, odd_every=7)
    odd = NUM_MINIBATCHES // 7
    assert trainer.graph.replays == NUM_MINIBATCHES - odd - trainer.graph.WARMUP
    assert graphed == pytest.approx(eager, rel=1e-5)
