"""Errors users act on. Each message is one line naming the problem and the fix."""


class ModelError(ValueError):
    """The model file is missing, corrupt, or not an edgeseg segmentation model."""


class InputError(ValueError):
    """A frame cannot be segmented (wrong type, shape or channels)."""


class SourceError(RuntimeError):
    """An image/video/stream source cannot be opened or has dropped for good."""


class BackendUnavailable(RuntimeError):
    """A backend cannot run on this machine (library missing, no driver, no GPU)."""


class OutputError(RuntimeError):
    """An output cannot be written (folder in use, exists, unwritable, disk full); nothing earlier is lost."""


class InferenceServerError(BackendUnavailable):
    """A remote inference server (Triton) is down, lacks the model, refused the request or timed out."""


class BuildError(RuntimeError):
    """The engine could not be built; the message says why and what to try."""
