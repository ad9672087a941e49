"""The client's errors: each says what failed in one line, for the caller to show as is.

:class:`AmbiguousModel` (``gatta.client.models``) and :class:`InputError`
(``gatta.client.inputs``) are ClientErrors too.
"""


class ClientError(RuntimeError):
    """A failure the caller should see as one line (server down, unknown model...)."""


class ServerUnreachable(ClientError):
    """Triton did not answer through the whole retry budget."""
