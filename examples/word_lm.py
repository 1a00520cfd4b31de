"""A word-level LSTM language model, as pytorch/examples' word_language_model writes it: the model takes
``(input, hidden)`` in (seq, batch) layout and returns ``(log_probs, hidden)``; training carries the hidden
state from batch to batch (truncated backpropagation through time), clips gradients at 0.25 and anneals the
learning rate by 4 when the loss plateaus. No wrapper class: the Task's own steps call the model as written.

The text is a small bundled corpus (Python's documentation, data/pydoc_corpus.txt, PSF licence). Judged by
perplexity (lower is better), with a budget relative to the baseline's:

    autoaccel optimize examples/word_lm.py --trials 4 --max-quality-drop 2%
"""

from __future__ import annotations

import os
import re
from collections import Counter
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from autoaccel import Task

CORPUS = Path(__file__).with_name("data") / "pydoc_corpus.txt"
VOCAB = 2000  # the most frequent words; the rest are <unk>
BPTT = 35  # tokens per training sequence
BATCH = 20  # parallel streams, as the reference batchifies


class RNNModel(nn.Module):
    """pytorch/examples' RNNModel (LSTM variant): encoder, LSTM, decoder; (seq, batch) in, log-probs out."""

    def __init__(self, ntoken: int = VOCAB + 1, ninp: int = 96, nhid: int = 96, nlayers: int = 2, dropout: float = 0.2) -> None:
        super().__init__()
        self.ntoken = ntoken
        self.drop = nn.Dropout(dropout)
        self.encoder = nn.Embedding(ntoken, ninp)
        self.rnn = nn.LSTM(ninp, nhid, nlayers, dropout=dropout)
        self.decoder = nn.Linear(nhid, ntoken)
        self.nlayers, self.nhid = nlayers, nhid

    def forward(self, input: torch.Tensor, hidden: Any = None) -> tuple[torch.Tensor, Any]:
        emb = self.drop(self.encoder(input))
        output, hidden = self.rnn(emb, hidden)
        decoded = self.decoder(self.drop(output)).view(-1, self.ntoken)
        return nn.functional.log_softmax(decoded, dim=1), hidden


def tokens(text: str) -> list[str]:
    return re.findall(r"[a-z]+|[0-9]+|[^\sa-z0-9]", text.lower())


class Streams(Dataset):
    """Items laid out as the reference's batchify: the token stream cut into ``batch`` parallel columns, item
    ``k * batch + j`` being column j's k-th chunk of BPTT tokens (input, next-token target). Read in order
    (Task.shuffle False), each batch continues the previous one column by column, so a carried hidden state
    follows its own text."""

    def __init__(self, ids: torch.Tensor, batch: int = BATCH, bptt: int = BPTT) -> None:
        steps = (len(ids) - 1) // (batch * bptt)
        columns = ids[: steps * batch * bptt + 1]
        self.x = columns[:-1].view(batch, steps, bptt).transpose(0, 1).reshape(-1, bptt)
        self.y = columns[1:].view(batch, steps, bptt).transpose(0, 1).reshape(-1, bptt)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[i], self.y[i]


def corpus() -> tuple[Streams, Streams]:
    words = tokens(CORPUS.read_text(encoding="utf-8"))
    vocab = {w: i + 1 for i, (w, _) in enumerate(Counter(words).most_common(VOCAB))}  # 0 is <unk>
    ids = torch.tensor([vocab.get(w, 0) for w in words], dtype=torch.long)
    cut = int(len(ids) * 0.85)
    return Streams(ids[:cut]), Streams(ids[cut:], batch=1)


class Carried:
    """The hidden state carried between batches, detached each step (repackage_hidden in the reference)."""

    def __init__(self) -> None:
        self.hidden: Any = None

    def take(self, batch: int) -> Any:
        if self.hidden is None or self.hidden[0].size(1) != batch:  # a new epoch, or another batch size
            return None
        return tuple(h.detach() for h in self.hidden)


state = Carried()


def training_step(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    x, y = batch  # (batch, seq) from the loader: the model wants (seq, batch)
    output, state.hidden = model(x.t(), state.take(x.size(0)))
    return nn.functional.nll_loss(output, y.t().reshape(-1))


def evaluation_step(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    # Each validation chunk from a fresh state: the score then does not depend on how evaluation batches them.
    x, y = batch
    output, _ = model(x.t())
    return output, y.t().reshape(-1)


def reset(model: nn.Module, epoch: int) -> None:
    state.hidden = None  # each epoch starts the streams again from their beginning


def task() -> Task:
    train_data, val_data = corpus()
    return Task(
        model=RNNModel,
        train_data=train_data,
        val_data=val_data,
        training_step=training_step,
        evaluation_step=evaluation_step,
        metric="perplexity",
        optimizer=lambda params, lr: torch.optim.SGD(params, lr=lr),
        lr=20.0,
        epochs=int(os.environ.get("AUTOACCEL_EPOCHS", "2")),  # more for a longer training (bench/fidelity.py)
        batch_size=BATCH,
        grad_clip=0.25,
        # The reference divides the learning rate by 4 whenever the loss stops improving.
        scheduler=lambda opt: torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.25, patience=0),
        shuffle=False,
        on_epoch=reset,
        # One input of batch 1 in the model's own layout (seq, batch), for latency and export: a tuple of the
        # model's arguments is used as it is.
        example_input=(torch.zeros(BPTT, 1, dtype=torch.long),),
        name="word_lm",
    )
