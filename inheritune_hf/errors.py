"""Errors a user can catch.

Every check that rejects input raises one of these *before* any work or write starts, with a message
that says what was wrong and what to do about it. They all derive from `InherituneError` (itself a
`ValueError`, so code that already catches bad-argument errors keeps working).
"""


class InherituneError(ValueError):
    """Base class of every error this package raises on purpose."""


class UnsupportedModelError(InherituneError):
    """The model is not a decoder-only causal LM (encoder-decoder, encoder-only, or no attention)."""


class LayerStackNotFoundError(InherituneError):
    """The stack of transformer blocks could not be located in the model."""


class InvalidLayersError(InherituneError):
    """A layer count or a layer index is out of range, or the list of layers is malformed."""


class ConfigSliceError(InherituneError):
    """A config field depends on the layer count in a way that cannot be sliced to the chosen layers."""


class OutputExistsError(InherituneError):
    """The output directory exists and is not empty, and overwriting was not asked for."""


class DataError(InherituneError):
    """A corpus, dataset or tokenizer cannot serve the requested samples or blocks."""


class TrainingError(InherituneError):
    """Training or growth settings are inconsistent (bad target, growth past the reference, resume mismatch)."""


class EvaluationError(InherituneError):
    """Downstream evaluation cannot run (missing extra, unknown task)."""


class HubError(InherituneError):
    """Publishing to the Hub failed or was refused (bad repo id, no token, unreachable endpoint)."""


class CheckpointError(InherituneError):
    """A checkpoint on disk is missing, corrupt, pickle-only, or cannot be mapped."""
