"""A small Transformer language model on WikiText-2, as Lightning's demo has it (after PyTorch's
``word_language_model`` example): the modules are built in the same order, so a seed gives the same weights."""

from __future__ import annotations

import math
import os
import urllib.request
from pathlib import Path
from typing import Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from typing_extensions import override

from fulmen.core.module import LightningModule

# The training split of WikiText-2 that PyTorch's examples ship (about 10 MB of text).
WIKITEXT2_URL = ("https://raw.githubusercontent.com/pytorch/examples/main/word_language_model/data/wikitext-2/"
                 "train.txt")


class Transformer(nn.Module):
    """An encoder-decoder ``nn.Transformer`` over token embeddings with sinusoidal positions; returns the
    log-probabilities of the next token, flattened to ``(batch * length, vocab_size)``."""

    def __init__(self, vocab_size: int = 33278, ninp: int = 200, nhead: int = 2, nhid: int = 200, nlayers: int = 2,
                 dropout: float = 0.2) -> None:
        super().__init__()
        self.pos_encoder = PositionalEncoding(ninp, dropout)
        self.embedding = nn.Embedding(vocab_size, ninp)
        self.transformer = nn.Transformer(d_model=ninp, nhead=nhead, num_encoder_layers=nlayers,
                                          num_decoder_layers=nlayers, dim_feedforward=nhid, dropout=dropout,
                                          batch_first=True)
        self.decoder = nn.Linear(ninp, vocab_size)
        self.ninp = ninp
        self.vocab_size = vocab_size
        self.src_mask: Optional[Tensor] = None

    def generate_square_subsequent_mask(self, size: int) -> Tensor:
        """A ``size`` x ``size`` mask with -inf above the diagonal: no position sees the ones after it."""
        return torch.full((size, size), float("-inf")).triu(diagonal=1)

    @override
    def forward(self, inputs: Tensor, target: Tensor, mask: Optional[Tensor] = None) -> Tensor:
        length = inputs.shape[1]
        if self.src_mask is None or self.src_mask.size(0) != length:
            self.src_mask = self.generate_square_subsequent_mask(length).to(inputs.device)
        if mask is None:
            mask = self.generate_square_subsequent_mask(length).to(inputs.device)
        src = self.pos_encoder(self.embedding(inputs) * math.sqrt(self.ninp))
        tgt = self.pos_encoder(self.embedding(target) * math.sqrt(self.ninp))
        output = self.decoder(self.transformer(src, tgt, tgt_mask=mask))
        return F.log_softmax(output, dim=-1).view(-1, self.vocab_size)


class PositionalEncoding(nn.Module):
    """Adds a sinusoidal position code to its input, then dropout.

    As in Lightning's demo, the code added is the one of position ``x.size(1)`` (the sequence length) to every
    position, not each position's own; kept so that the demo trains to the same numbers as Lightning's.
    """

    def __init__(self, dim: int, dropout: float = 0.1, max_len: int = 5000) -> None:
        super().__init__()
        self.dropout = nn.Dropout(p=dropout)
        self.dim = dim
        self.max_len = max_len
        # Built on the first forward, on the input's device; not a buffer, so that it is not in the state dict.
        self.pe: Optional[Tensor] = None

    @override
    def forward(self, x: Tensor) -> Tensor:
        if self.pe is None:
            self.pe = self._table(x.device)
        return self.dropout(x + self.pe[:, x.size(1)])

    def _table(self, device: torch.device) -> Tensor:
        position = torch.arange(self.max_len, dtype=torch.float, device=device).unsqueeze(1)
        frequency = torch.exp(torch.arange(0, self.dim, 2, device=device).float() * (-math.log(10000.0) / self.dim))
        table = torch.zeros(self.max_len, self.dim, device=device)
        table[:, 0::2] = torch.sin(position * frequency)
        table[:, 1::2] = torch.cos(position * frequency)
        return table.unsqueeze(0)


class Dictionary:
    """Words to indices (``word2idx``) and back (``idx2word``), in order of first appearance."""

    def __init__(self) -> None:
        self.word2idx: dict[str, int] = {}
        self.idx2word: list[str] = []

    def add_word(self, word: str) -> int:
        """The index of ``word``, added at the end if new."""
        if word not in self.word2idx:
            self.word2idx[word] = len(self.idx2word)
            self.idx2word.append(word)
        return self.word2idx[word]

    def __len__(self) -> int:
        return len(self.idx2word)


def tokenize(path: Union[str, Path]) -> tuple[Tensor, Dictionary]:
    """The words of a text file (split on whitespace, an ``<eos>`` after each line) as one int64 tensor of indices,
    with the dictionary that maps them."""
    dictionary = Dictionary()
    ids: list[int] = []
    with open(path, encoding="utf8") as f:
        for line in f:
            ids.extend(dictionary.add_word(word) for word in line.split() + ["<eos>"])
    return torch.tensor(ids, dtype=torch.int64), dictionary


class WikiText2(Dataset):
    """The training text of WikiText-2 as blocks of ``block_size`` tokens: item ``i`` is (tokens, the same tokens
    shifted by one). ``download`` fetches the file into ``data_dir/wikitext-2.txt`` when it is not there."""

    def __init__(self, data_dir: Union[str, Path] = Path("./data"), block_size: int = 35,
                 download: bool = True) -> None:
        super().__init__()
        self.path = Path(data_dir) / "wikitext-2.txt"
        if download:
            self.download(self.path)
        if not self.path.exists():
            raise FileNotFoundError(f"WikiText2: {self.path} does not exist; pass download=True to fetch it")
        self.data, self.dictionary = tokenize(self.path)
        self.block_size = block_size

    @property
    def vocab_size(self) -> int:
        return len(self.dictionary)

    def __len__(self) -> int:
        return len(self.data) // self.block_size - 1

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        start = index * self.block_size
        return self.data[start:start + self.block_size], self.data[start + 1:start + 1 + self.block_size]

    @staticmethod
    def download(destination: Union[str, Path]) -> None:
        """Fetch the text to ``destination`` unless it exists (written whole, then renamed into place)."""
        destination = Path(destination)
        if destination.exists():
            return
        os.makedirs(destination.parent, exist_ok=True)
        partial = destination.with_suffix(".part")
        with urllib.request.urlopen(WIKITEXT2_URL, timeout=60) as response:  # noqa: S310 (a fixed https URL)
            partial.write_bytes(response.read())
        os.replace(partial, destination)


class LightningTransformer(LightningModule):
    """The ``Transformer`` trained on WikiText2 with SGD(lr=0.1) and the negative log-likelihood."""

    def __init__(self, vocab_size: int = 33278) -> None:
        super().__init__()
        self.model = Transformer(vocab_size=vocab_size)

    @override
    def forward(self, inputs: Tensor, target: Tensor) -> Tensor:
        return self.model(inputs, target)

    @override
    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        inputs, target = batch
        return F.nll_loss(self(inputs, target), target.view(-1))

    @override
    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.model.parameters(), lr=0.1)

    @override
    def prepare_data(self) -> None:
        WikiText2(download=True)

    @override
    def train_dataloader(self) -> DataLoader:
        return DataLoader(WikiText2())
