"""Reading a W&B offline run back: the records of its ``run-<id>.wandb`` file, decoded with wandb's own protobuf
schema (``wandb.proto.wandb_internal_pb2.Record``). wandb 0.31 ships no Python reader for these files, so the
framing (LevelDB's log format, after a 7-byte W&B header) is read here."""

from __future__ import annotations

import glob
import json
import os
import struct
import time
from typing import Any, Callable

_BLOCK = 32768
_HEADER = 7  # ":W&B", a 2-byte magic, a version byte


def _records(path: str) -> list[Any]:
    from wandb.proto import wandb_internal_pb2

    data = open(path, "rb").read()
    assert data[:4] == b":W&B", f"{path} is not a W&B run file"
    out, pos, pending = [], _HEADER, b""
    while pos + 7 <= len(data):
        left = _BLOCK - pos % _BLOCK
        if left < 7:  # a block's tail too short for a record header is padding
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if kind == 0:
            pos += left
            continue
        chunk = data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (2, 3):  # FIRST, MIDDLE parts of a record split across blocks
            pending += chunk
            continue
        record = wandb_internal_pb2.Record()
        record.ParseFromString(pending + chunk)
        pending = b""
        out.append(record)
    return out


def read_offline_run(save_dir: str) -> dict[str, Any]:
    """{"project", "id", "name", "config": {...}, "history": [rows], "artifacts": [(name, type, aliases)]}."""
    (path,) = glob.glob(os.path.join(save_dir, "wandb", "offline-run-*", "run-*.wandb"))
    run: dict[str, Any] = {"config": {}, "history": [], "artifacts": []}
    for record in _records(path):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run.update(project=record.run.project, id=record.run.run_id, name=record.run.display_name)
            updates = record.run.config.update
        elif kind == "config":
            updates = record.config.update
        elif kind == "history":
            run["history"].append({i.key or "/".join(i.nested_key): json.loads(i.value_json)
                                   for i in record.history.item})
            continue
        elif kind == "artifact":
            run["artifacts"].append((record.artifact.name, record.artifact.type, list(record.artifact.aliases)))
            continue
        else:
            continue
        for item in updates:
            if not item.key.startswith("_"):
                run["config"][item.key] = json.loads(item.value_json)
    return run


def wait_for_run(save_dir: str, ready: Callable[[dict[str, Any]], bool], timeout: float = 300.0) -> dict[str, Any]:
    """The offline run once ``ready(run)`` holds. wandb-core writes the run file in its own process and may still be
    writing after ``finish()`` returns, later on a busy machine; so this re-reads until the records a test needs are
    there, up to a generous ``timeout``, and then returns what it read last (for the test's assertion to show)."""
    deadline = time.monotonic() + timeout
    run: dict[str, Any] = {"config": {}, "history": [], "artifacts": []}
    while True:
        try:
            run = read_offline_run(save_dir)
        except Exception:  # no run file yet, or one whose last record is still half-written
            pass
        else:
            if ready(run):
                return run
        if time.monotonic() > deadline:
            return run
        time.sleep(0.2)
