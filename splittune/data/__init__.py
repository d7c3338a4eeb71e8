"""Data sets (chatterbot topics and dialogues, Shakespeare, digits, local csv/jsonl, Hugging Face) and their partitioning across devices."""

from .causal import CausalLMData, tensorize_causal
from .config import DataConfig
from .dataset import ClassificationData
from .loaders import load_data
from .partition import partition
from .stats import partition_stats, partition_table

__all__ = ["DataConfig", "ClassificationData", "CausalLMData", "tensorize_causal", "load_data", "partition", "partition_table", "partition_stats"]
