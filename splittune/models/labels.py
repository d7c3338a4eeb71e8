"""The label value a transformers loss does not score (its cross-entropy's `ignore_index`).

The causal-LM data puts it on the prompt and the padding, the split server accepts it in the labels
of a causal LM, and the evaluation skips it, so all three must agree with the models' own loss.
"""

IGNORE_INDEX = -100
