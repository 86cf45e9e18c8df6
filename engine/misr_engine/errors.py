"""The one exception type the command line turns into a one-line message, and the exit codes."""

EXIT_OK = 0
EXIT_INTERNAL = 1  # a bug: still one line, a traceback with MISR_DEBUG=1
EXIT_BAD_INPUT = 2  # a MisrError: bad input or environment, one line naming the file
EXIT_INTERRUPTED = 130  # SIGINT / SIGTERM: nothing written


class MisrError(Exception):
    """A problem with the user's input or environment, explained in one line.

    The message names the file(s) involved and the problem; the command line prints it
    as ``misr: error: <message>`` and exits with status 2, without a traceback.
    """
