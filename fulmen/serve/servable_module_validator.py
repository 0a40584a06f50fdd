"""ServableModuleValidator: before training starts, serve the module over HTTP and check that it answers its example
request with the expected response."""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.error
import urllib.request
from typing import TYPE_CHECKING, Any, Literal, Optional

import torch
from typing_extensions import override

from fulmen.callbacks.callback import Callback
from fulmen.serve.servable_module import ServableModule
from fulmen.utilities.exceptions import MisconfigurationException
from fulmen.utilities.model_helpers import is_overridden
from fulmen.utilities.rank_zero import rank_zero_only

if TYPE_CHECKING:
    from fulmen.trainer.trainer import Trainer

log = logging.getLogger("fulmen")


class _Reply:
    """The server's reply, read like a ``requests`` response: ``status_code`` and ``json()``."""

    def __init__(self, status_code: int, body: Any) -> None:
        self.status_code = status_code
        self._body = body

    def json(self) -> Any:
        return self._body

    def __repr__(self) -> str:
        return f"<Reply [{self.status_code}]>"


class ServableModuleValidator(Callback):
    """At the start of training (on rank zero), serve the module with FastAPI on ``host:port`` (a ``/ping`` and a
    ``/serve`` endpoint), post ``configure_payload()`` to ``/serve``, and compare the reply with
    ``configure_response()``. A module that cannot be served raises (``exit_on_failure``) before any step runs.

    The server runs in a thread of this process and stops once the request is answered. Needs ``fastapi`` and
    ``uvicorn``. Only ``optimization=None`` and ``server="fastapi"`` are supported (as in Lightning).
    """

    def __init__(self, optimization: Optional[Literal["trace", "script", "onnx", "tensorrt"]] = None,
                 server: Literal["fastapi", "ml_server", "torchserve", "sagemaker"] = "fastapi",
                 host: str = "127.0.0.1", port: int = 8080, timeout: int = 20, exit_on_failure: bool = True) -> None:
        super().__init__()
        from fulmen.utilities.imports import module_available

        for package in ("fastapi", "uvicorn"):
            if not module_available(package):
                raise ModuleNotFoundError(f"ServableModuleValidator serves the module with {package}, which is not "
                                          f"installed: pip install fastapi uvicorn")
        if optimization is not None:
            raise ValueError(f"ServableModuleValidator(optimization={optimization!r}) is not supported; serve the "
                             "module as it is (optimization=None)")
        if server != "fastapi":
            raise ValueError(f"ServableModuleValidator(server={server!r}) is not supported; use server='fastapi'")
        self.optimization = optimization
        self.server = server
        self.host = host
        self.port = port
        self.timeout = timeout
        self.exit_on_failure = exit_on_failure
        self.resp: Optional[_Reply] = None  # the server's reply to the example request

    @property
    def successful(self) -> Optional[bool]:
        """Whether the request was answered (None before it was sent)."""
        return self.resp.status_code == 200 if self.resp is not None else None

    @override
    def state_dict(self) -> dict[str, Any]:
        return {"successful": self.successful, "optimization": self.optimization, "server": self.server}

    @rank_zero_only
    @override
    def on_train_start(self, trainer: "Trainer", pl_module: Any) -> None:
        from fulmen.strategies.deepspeed import DeepSpeedStrategy
        from fulmen.strategies.fsdp import FSDPStrategy

        if isinstance(trainer.strategy, (DeepSpeedStrategy, FSDPStrategy)):
            raise MisconfigurationException(f"ServableModuleValidator cannot serve a module sharded by "
                                            f"{type(trainer.strategy).__name__}; check it with strategy='ddp' or on "
                                            "one device")
        if not isinstance(pl_module, ServableModule):
            raise TypeError(f"ServableModuleValidator serves a ServableModule; {type(pl_module).__name__} is not "
                            "one: subclass fulmen.serve.ServableModule too")
        for name in ("configure_payload", "configure_serialization", "serve_step"):
            if not is_overridden(name, pl_module, ServableModule):
                raise NotImplementedError(f"{type(pl_module).__name__}.{name} must be defined to serve the module")
        payload = pl_module.configure_payload()
        if "body" not in payload:
            raise ValueError(f"configure_payload() returned {payload!r}; it must be a dict with a 'body' field")
        self.resp = self._ask(pl_module, payload)
        if is_overridden("configure_response", pl_module, ServableModule):
            expected = pl_module.configure_response()
            if self.resp.json() != expected:
                raise ValueError(f"The served module answered {self.resp.json()!r}, but configure_response() "
                                 f"expects {expected!r}")
        if self.exit_on_failure and not self.successful:
            raise MisconfigurationException(f"The module could not be served: /serve answered "
                                            f"{self.resp.status_code} {self.resp.json()!r}")
        if self.successful:
            log.info(f"The module is servable; it answered {self.resp.json()!r}")

    def _ask(self, module: Any, payload: dict[str, Any]) -> _Reply:
        """Serve ``module`` in a thread, post ``payload`` once the server answers /ping, then stop it."""
        import uvicorn

        server = uvicorn.Server(uvicorn.Config(_app(module), host=self.host, port=self.port, log_level="error"))
        thread = threading.Thread(target=server.run, name="fulmen-serve-check", daemon=True)
        training = module.training
        module.eval()
        thread.start()
        base = f"http://{self.host}:{self.port}"
        try:
            deadline = time.monotonic() + self.timeout
            while True:
                try:
                    with urllib.request.urlopen(f"{base}/ping", timeout=2) as reply:
                        if reply.status == 200:
                            break
                except OSError:
                    pass
                if time.monotonic() > deadline or not thread.is_alive():
                    raise TimeoutError(f"The server did not start on {base} within {self.timeout} s (is the port "
                                       "free? pass port= another one)")
                time.sleep(0.1)
            request = urllib.request.Request(f"{base}/serve", data=json.dumps(payload).encode(),
                                             headers={"Content-Type": "application/json"}, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as reply:
                    return _Reply(reply.status, json.loads(reply.read()))
            except urllib.error.HTTPError as err:
                return _Reply(err.code, err.read().decode(errors="replace"))
        finally:
            server.should_exit = True
            thread.join(timeout=self.timeout)
            module.train(training)


def _app(module: Any) -> Any:
    """The FastAPI app: ``GET /ping`` answers true; ``POST /serve`` deserializes the body's fields, runs
    ``serve_step`` under ``no_grad`` and serializes its outputs."""
    from fastapi import Body, FastAPI

    app = FastAPI()
    deserializers, serializers = module.configure_serialization()

    @app.get("/ping")
    def ping() -> bool:
        return True

    @app.post("/serve")
    def serve(payload: dict = Body(...)) -> dict[str, Any]:
        body = dict(payload["body"])
        for key, deserialize in deserializers.items():
            body[key] = deserialize(body[key])
        with torch.no_grad():
            output = module.serve_step(**body)
        if not isinstance(output, dict):
            raise TypeError(f"serve_step returned {type(output).__name__}; return a dict of outputs")
        for key, serialize in serializers.items():
            output[key] = serialize(output[key])
        return output

    return app
