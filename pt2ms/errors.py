"""The one exception type the package raises for problems a user can fix."""


class Pt2MsError(Exception):
    """A problem with the user's input: the message names the file and what to do about it."""
