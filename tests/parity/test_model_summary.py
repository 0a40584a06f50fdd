"""The model summary table is the same text as pytorch-lightning's: names, types, counts, modes, FLOPs and layer
sizes, at several depths, with frozen and eval-mode parts."""

from __future__ import annotations

import importlib

import pytest
import torch

from tests.parity.recorder import load

pytest.importorskip("pytorch_lightning")


def build(framework, example, frozen):
    _, demos = load(framework)

    class Net(demos.BoringModel):
        def __init__(self):
            super().__init__()
            self.encoder = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(),
                                               torch.nn.Sequential(torch.nn.Linear(64, 2000), torch.nn.Tanh()))
            self.scale = torch.nn.Parameter(torch.ones(1))  # a parameter of the model itself: "other params"
            if example:
                self.example_input_array = torch.zeros(3, 32)
            if frozen:
                self.encoder[0].requires_grad_(False)
                self.encoder[2].eval()

        def forward(self, x):
            return self.layer(x) * self.scale + self.encoder(x).mean()

    return Net()


@pytest.mark.parametrize("example", [False, True])
@pytest.mark.parametrize("frozen", [False, True])
@pytest.mark.parametrize("depth", [1, 2, -1, 0])
def test_summary_text_matches(example, frozen, depth):
    texts = {}
    for framework in ("fulmen", "pytorch_lightning"):
        module = importlib.import_module("fulmen.utilities.model_summary.model_summary" if framework == "fulmen" else
                                         "pytorch_lightning.utilities.model_summary")
        torch.manual_seed(0)
        texts[framework] = str(module.ModelSummary(build(framework, example, frozen), max_depth=depth))
    assert texts["fulmen"] == texts["pytorch_lightning"]
