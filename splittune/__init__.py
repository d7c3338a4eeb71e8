"""splittune: split fine-tuning of transformers with LoRA across devices, edge servers and a cloud."""

from splittune.models.split import Activations, Stage, split_model

__all__ = ["Activations", "Stage", "split_model"]
__version__ = "0.1.0"
