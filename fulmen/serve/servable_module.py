"""ServableModule: what a module implements to be served (and checked by ``ServableModuleValidator``)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Callable

import torch
from torch import Tensor


class ServableModule(ABC, torch.nn.Module):
    """Mix into a LightningModule to describe how it answers requests:

    - ``configure_payload``: an example request, ``{"body": {...}}``;
    - ``configure_serialization``: how each field of a request body becomes the step's input (deserializers), and
      how each output becomes JSON (serializers);
    - ``serve_step(**inputs)``: the outputs, as a dict;
    - ``configure_response``: the response the example request must give.
    """

    @abstractmethod
    def configure_payload(self) -> dict[str, Any]:
        """An example request: a dict with a "body" dict of fields."""

    @abstractmethod
    def configure_serialization(self) -> tuple[dict[str, Callable], dict[str, Callable]]:
        """(deserializers, serializers): request field -> input function, output name -> JSON function."""

    @abstractmethod
    def serve_step(self, *args: Tensor, **kwargs: Tensor) -> dict[str, Tensor]:
        """Answer one request: its deserialized fields in, a dict of outputs out (run under ``no_grad``, in eval
        mode)."""

    @abstractmethod
    def configure_response(self) -> dict[str, Any]:
        """The response ``configure_payload``'s request must give."""
