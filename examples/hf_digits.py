"""A Hugging Face Transformers model, used as its authors write it: built from a config (random weights, no
download), fed dict batches (``model(**batch)``) and returning a ModelOutput whose ``.loss`` it computes from
the batch's ``labels``. No wrapper class and no loss: autoaccel calls the model with the batch's keys, trains on
its own loss and reads its ``.logits``.

The data is scikit-learn's handwritten digits (shipped offline), each 8x8 image read as a sentence of 64
tokens (its pixel intensities, 0 to 16), classified by a small BERT.

    autoaccel optimize examples/hf_digits.py --trials 4

Needs ``pip install transformers`` (part of autoaccel's test extra).
"""

from __future__ import annotations

import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch.utils.data import Dataset
from transformers import BertConfig, BertForSequenceClassification

from autoaccel import Task

PIXELS = 64
LEVELS = 17  # pixel intensities 0..16
CLS = LEVELS  # the sentence-start token, as BERT's [CLS]


def bert(config: BertConfig | None = None) -> BertForSequenceClassification:
    return BertForSequenceClassification(config or BertConfig(
        vocab_size=LEVELS + 1, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=PIXELS + 1, num_labels=10, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0))


class DigitSentences(Dataset):
    """Items as a tokenizer would give them: input_ids, attention_mask and labels, one dict per digit."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.ids = torch.cat([torch.full((len(images), 1), CLS), images.long()], dim=1)
        self.labels = labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[i], "attention_mask": torch.ones_like(self.ids[i]), "labels": self.labels[i]}


def task() -> Task:
    x, y = load_digits(return_X_y=True)
    x_train, x_val, y_train, y_val = train_test_split(torch.tensor(x), torch.tensor(y), test_size=0.2, random_state=0,
                                                      stratify=y)
    return Task(
        model=bert,
        train_data=DigitSentences(x_train, y_train),
        val_data=DigitSentences(x_val, y_val),
        optimizer=lambda params, lr: torch.optim.AdamW(params, lr=lr),
        lr=3e-3,
        epochs=15,
        batch_size=32,
        name="hf_digits",
    )
