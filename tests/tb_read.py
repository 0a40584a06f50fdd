"""Reading TensorBoard event files back with tensorboard's own reader, for the logger tests."""

from __future__ import annotations

from typing import Any


def read_events(log_dir: str) -> dict[str, Any]:
    """{"scalars": {tag: [(step, value)]}, "hparams": {name: value}, "metrics": [hparams metric tags],
    "graph": whether a graph was written}."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    acc = EventAccumulator(log_dir)
    acc.Reload()
    tags = acc.Tags()
    scalars = {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in tags["scalars"]}
    hparams: dict[str, Any] = {}
    metrics: list[str] = []
    try:
        content = acc.PluginTagToContent("hparams")
    except KeyError:  # no hyperparameters were written
        content = {}
    if "_hparams_/session_start_info" in content:
        start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
        for name, value in start.session_start_info.hparams.items():
            hparams[name] = getattr(value, value.WhichOneof("kind"))
    if "_hparams_/experiment" in content:
        experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"])
        metrics = [m.name.tag for m in experiment.experiment.metric_infos]
    return {"scalars": scalars, "hparams": hparams, "metrics": metrics, "graph": tags.get("graph", False)}
