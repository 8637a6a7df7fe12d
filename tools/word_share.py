"""How many of a run's sampled words are words of its training text.

    python -m tools.word_share --run RUN_ID [--chars 1000] [--temperature 0.8] [--seed 0] [--epoch best]

Samples `--chars` characters from the run's checkpoint (its best held-out one by default), as
`generate` does, and counts the whole words among them that occur in the run's training slice (the
text before its held-out part). A model that writes noise scores low; one that writes real words
scores high, whether it learned spelling or memorised: read the sample beside the figure.
"""

import argparse
import json

from charrnn.cli.runs import run_checkpoint
from charrnn.data import load_corpus, split_heldout
from charrnn.generate import generate, words_seen
from charrnn.runs.store import RunStore


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m tools.word_share", description=__doc__.split("\n")[0])
    p.add_argument("--run", required=True)
    p.add_argument("--epoch", default="best", help="best, last or an epoch number")
    p.add_argument("--chars", type=int, default=1000)
    p.add_argument("--temperature", type=float, default=0.8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--prefix", default="the time traveller ")
    args = p.parse_args()
    store = RunStore()
    run = store.run(args.run)
    epoch = args.epoch if args.epoch in ("best", "last") else int(args.epoch)
    model, vocab, which = run_checkpoint(store, args.run, epoch, "cpu")
    text = run["corpus"]
    corpus = load_corpus(text["source"], mode=text["mode"], max_tokens=text["max_tokens"] or 0, download=False)
    split = split_heldout(corpus, run["config"]["val_tokens"])
    training = "".join(vocab.idx_to_token[i] for i in split.train)
    r = generate(model, vocab, args.prefix, args.chars, temperature=args.temperature, seed=args.seed)
    seen, words = words_seen(r.generated, training)
    print(
        json.dumps(
            {
                "run": args.run,
                "checkpoint": which,
                "words": words,
                "in_training_text": seen,
                "share": round(seen / words, 4) if words else None,
                "sample": r.text,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
