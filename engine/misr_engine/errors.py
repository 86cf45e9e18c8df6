"""The one exception type the command line turns into a one-line message."""


class MisrError(Exception):
    """A problem with the user's input or environment, explained in one line.

    The message names the file(s) involved and the problem; the command line prints it
    as ``misr: error: <message>`` and exits with status 2, without a traceback.
    """
