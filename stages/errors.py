"""The one exception type that means "the user gave us something wrong"."""


class UserError(Exception):
    """Bad input (a path, an option, a malformed file) rather than a bug.

    The CLI prints ``str(error)`` as one line on stderr and exits with code 2, without a
    traceback, so the message must name the file or option and say what was expected.
    """
