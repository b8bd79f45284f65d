"""Deprecated name of :mod:`resilience.web.request_keys` (request key extractors).

Renamed so that it is not confused with the replay CLI's ``--key`` parsing
(:mod:`resilience.replay.key_spec`); the public names live in
:mod:`resilience.web` and the adapters (``resilience.asgi.client_ip``...).
"""

import warnings

from resilience.web.request_keys import (  # the names without a leading underscore
    DEFAULT_HASHER,
    DEFAULT_KEY,
    MAX_KEY_LENGTH,
    NO_PEER,
    UNIX_PEER,
    CallableKey,
    ClientIP,
    HeaderKey,
    HeaderLookup,
    KeyHasher,
    RequestKey,
    as_key,
    clean_header_value,
    clean_key,
    client_ip,
    header,
    key_from,
)

warnings.warn(
    "resilience.web.keys is deprecated: import from resilience.web "
    "(or resilience.web.request_keys)",
    DeprecationWarning,
    stacklevel=2,
)

__all__ = [
    "DEFAULT_HASHER",
    "DEFAULT_KEY",
    "MAX_KEY_LENGTH",
    "NO_PEER",
    "UNIX_PEER",
    "CallableKey",
    "ClientIP",
    "HeaderKey",
    "HeaderLookup",
    "KeyHasher",
    "RequestKey",
    "as_key",
    "clean_header_value",
    "clean_key",
    "client_ip",
    "header",
    "key_from",
]
