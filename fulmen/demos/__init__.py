"""Models and data to try fulmen with and to write bug reports against, under Lightning's names:
``BoringModel`` and friends (``boring_classes.py``), a small Transformer language model (``transformer.py``), an
LSTM (``lstm.py``) and an MNIST datamodule (``mnist_datamodule.py``)."""

from fulmen.demos.boring_classes import BoringDataModule, BoringModel, DemoModel
from fulmen.demos.lstm import LightningLSTM, SequenceSampler, SimpleLSTM
from fulmen.demos.transformer import LightningTransformer, Transformer, WikiText2

__all__ = ["BoringDataModule", "BoringModel", "DemoModel", "LightningLSTM", "LightningTransformer", "SequenceSampler",
           "SimpleLSTM", "Transformer", "WikiText2"]
