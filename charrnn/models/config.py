"""What a model is: its kind, cell, width, depth, dropout, weight drop and n-gram mix, as a dataclass of plain
fields that goes straight into checkpoints."""

from dataclasses import dataclass

from charrnn.baseline import MAX_ORDER
from charrnn.models import mixture

KINDS = ("scratch", "concise")  # the book's explicit parameters; torch.nn's RNN, GRU or LSTM with a Linear head
CELLS = ("rnn", "gru", "lstm")  # 8.4-8.6's tanh RNN, 9.1's GRU, 9.2's LSTM
MAX_LAYERS = 8  # 9.3 stacks 2; deeper than 8 trains no better on one text and only costs time
MAX_DROPOUT = 0.95  # p = 1 drops everything; anything near it learns nothing


@dataclass
class ModelConfig:
    vocab_size: int  # V: one-hot input width and number of output classes
    num_hiddens: int = 512  # H: width of the hidden state of every layer
    kind: str = "scratch"  # one of KINDS; checkpoints written before it existed are scratch
    cell: str = "rnn"  # one of CELLS; checkpoints written before chapter 9 hold an rnn
    num_layers: int = 1  # stacked recurrent layers (9.3): layer l reads layer l-1's hidden states
    dropout: float = 0.0  # on the non-recurrent connections (between layers, before the head); off in eval
    # DropConnect on the recurrent weights W_hh (Merity et al. 2017's weight drop): one mask per minibatch,
    # shared by every step, so the recurrence itself is regularised; off in eval; concise models only
    weight_drop: float = 0.0
    # Mix the predictions with a Kneser-Ney n-gram of the training text (charrnn.models.mixture): its order (0 = no
    # mix, the book's) and its share of the mixture
    ngram_order: int = 0
    ngram_weight: float = 0.0

    def check(self) -> "ModelConfig":
        """Raise ValueError naming the first field out of range and how to fix it."""
        for name, choices in (("model", KINDS), ("cell", CELLS)):
            value = self.kind if name == "model" else self.cell
            if value not in choices:
                raise ValueError(f"{name} must be one of {', '.join(choices)}, not {value!r}")
        if not _is_int(self.num_layers) or not 1 <= self.num_layers <= MAX_LAYERS:
            raise ValueError(f"num_layers must be a whole number from 1 to {MAX_LAYERS}, not {self.num_layers!r}")
        for name in ("dropout", "weight_drop"):
            value = getattr(self, name)
            number = isinstance(value, (int, float)) and not isinstance(value, bool)
            if not number or not 0 <= value <= MAX_DROPOUT:
                raise ValueError(
                    f"{name} must be a probability from 0 (off) to {MAX_DROPOUT}, not {value!r}; "
                    f"1 would drop every {'activation' if name == 'dropout' else 'recurrent weight'}"
                )
        if self.weight_drop and self.kind != "concise":
            raise ValueError(
                "weight_drop works with the concise model only (the scratch cells' hand-written backpropagation "
                "keeps W_hh whole); use model concise, or weight_drop 0"
            )
        mixture.check(self.ngram_order, self.ngram_weight, MAX_ORDER)
        return self


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def layer_name(name: str, layer: int) -> str:
    """A scratch parameter's name in layer `layer`: the book's own name in the first layer (so a one-layer
    model is exactly the book's), with torch's `_l1`, `_l2`, ... suffix above it."""
    return name if layer == 0 else f"{name}_l{layer}"
