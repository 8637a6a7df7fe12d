"""The flags' words for the library's settings: a library message said with the flags (`num_epochs` is
`--epochs`), whether a setting was given on the command line, and a preset applied under the flags given."""

import re

from charrnn.book import preset

# The library's names for settings, as the flags that set them: anywhere in a message...
FLAGS = {
    "num_epochs": "--epochs",
    "batch_size": "--batch-size",
    "num_steps": "--num-steps",
    "num_hiddens": "--num-hiddens",
    "max_tokens": "--max-tokens",
    "num_preds": "--num-preds",
    "top_k": "--top-k",
    "checkpoint_every": "--checkpoint-every",
    "val_tokens": "--val-tokens",
    "eval_every": "--eval-every",
    "num_layers": "--num-layers",
    "weight_decay": "--weight-decay",
    "weight_drop": "--weight-drop",
    "lr_schedule": "--lr-schedule",
    "ngram_order": "--ngram-order",
    "ngram_weight": "--ngram-weight",
}
# ...and plain words only as a message's first word, where they name the setting ("device 'tpu' ...").
LEADING = ("lr", "clip", "seed", "device", "sampling", "mode", "prefix", "temperature", "state", "model", "cell")
LEADING += ("dropout", "optimizer", "order")


def apply_preset(args, argv: list[str]) -> None:
    """Put `args.preset`'s settings into `args`, except those whose flag is in `argv` (given there, they win)."""
    for name, value in preset(args.preset).items():
        if not on_command_line(name, argv):
            setattr(args, "epochs" if name == "num_epochs" else name, value)


def on_command_line(name: str, argv: list[str]) -> bool:
    """Whether the TrainConfig field `name`'s flag is in `argv` (`--lr 0.5` or `--lr=0.5`)."""
    flag = FLAGS.get(name, "--" + name.replace("_", "-"))
    return any(a == flag or a.startswith(flag + "=") for a in argv)


def given(name: str, argv: list[str], preset_name: str | None = None) -> bool:
    """Whether the TrainConfig field `name` was set on the command line: by its flag, or by a preset."""
    return (preset_name is not None and name in preset(preset_name)) or on_command_line(name, argv)


def flagged(message: str) -> str:
    """A library message in the CLI's words: `num_epochs` becomes `--epochs`, on one line."""
    for name, flag in FLAGS.items():
        message = re.sub(rf"\b{name}\b", flag, message)
    first, _, rest = message.partition(" ")
    message = f"--{first} {rest}" if first in LEADING else message
    return " ".join(message.splitlines())
