"""The one exception type that commands turn into a one-line message and a non-zero exit.

Anything the user can get wrong (a bad file, a bad override, a candidate controller that does
not validate) raises :class:`AutoTTSError` with a message that names the file or field and the
problem.  The CLI prints ``error: <message>`` and exits with status 2; nothing else is caught,
so genuine bugs still show their traceback.
"""

from __future__ import annotations


class AutoTTSError(Exception):
    """A user-facing error: bad input, bad configuration, or a rejected candidate."""
