"""`python -m charrnn baseline`: the n-gram yardstick (`charrnn.baseline`) on the split a run would use."""

import json
from dataclasses import asdict

from charrnn.baseline import baseline
from charrnn.data import load_corpus, split_heldout


def run(args) -> int:
    """Fit on the training slice of `train`'s split for the same flags; print the held-out perplexity."""
    c = load_corpus(args.corpus, args.mode, args.max_tokens)
    split = split_heldout(c, args.val_tokens)
    if not split.val:
        raise ValueError("val_tokens is 0: there is no held-out text to score; give val_tokens of at least 2")
    result = baseline(split.train, split.val, args.order, len(c.vocab), args.smoothing)
    start, end = split.val_range
    if args.json:
        print(json.dumps({**asdict(result), "val_range": [start, end], "corpus": c.name}))
        return 0
    print(
        f"{args.order}-gram ({args.smoothing}) held-out perplexity {result.val_perplexity:.3f} on chars "
        f"{start:,}..{end - 1:,} ({end - start:,}), trained on {result.train_length:,} chars of {c.name}"
    )
    return 0
