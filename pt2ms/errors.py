"""The exception types the package raises for problems a user can fix, each with its exit code."""


class Pt2MsError(Exception):
    """A problem with the user's input: the message names the file and what to do about it."""
    exit_code = 2


class ModelRunError(Pt2MsError):
    """A model's forward pass failed (a kernel missing on this device, a shape the model refuses): the
    message names the side and the layer. Stage 4 still writes its report, as "not compared"."""
    exit_code = 3
