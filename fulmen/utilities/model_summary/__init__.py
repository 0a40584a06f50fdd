"""The model summary table (``model_summary.py``) and its ZeRO-3 variant (``model_summary_deepspeed.py``)."""

from fulmen.utilities.model_summary.model_summary import (LayerSummary, ModelSummary, get_formatted_model_size,
                                                          get_human_readable_count, parse_batch_shape, summarize)
from fulmen.utilities.model_summary.model_summary_deepspeed import DeepSpeedSummary

__all__ = ["DeepSpeedSummary", "LayerSummary", "ModelSummary", "get_formatted_model_size", "get_human_readable_count",
           "parse_batch_shape", "summarize"]
