"""MLflow basic-auth ``authorization_function`` that trusts mlflow-gateway's signed assertion.

Set ``authorization_function = mlflow_gateway_auth:authenticate_request`` in ``basic_auth.ini``
and ``MLFLOW_GATEWAY_ASSERTION_SECRET_FILE`` in the server's environment. The gateway
authenticates the user (htpasswd, MLflow's user database, JWT) and signs who it is; MLflow's
basic-auth app then judges permissions as usual. See README.md for the header format.
"""

from __future__ import annotations

import base64
import binascii
import configparser
import functools
import hashlib
import hmac
import logging
import os
import secrets
import threading
import time

from flask import Response, g, request
from werkzeug.datastructures import Authorization

__all__ = [
    "ASSERTION_HEADER",
    "FALLBACK_OPTION",
    "MAX_AGE_SECONDS",
    "MIN_SECRET_LEN",
    "SECRET_FILE_ENV",
    "authenticate_request",
    "sign",
    "verify",
]

#: The request header that carries the assertion.
ASSERTION_HEADER = "X-MLflow-Gateway-Assertion"
#: The environment variable naming the file that holds the shared secret.
SECRET_FILE_ENV = "MLFLOW_GATEWAY_ASSERTION_SECRET_FILE"
#: How far (seconds) an assertion's timestamp may be from the server's clock.
MAX_AGE_SECONDS = 60
#: The shortest secret accepted, in bytes (the gateway enforces the same).
MIN_SECRET_LEN = 32
#: ``[mlflow]`` option of ``basic_auth.ini``: ``true`` lets a request WITHOUT an assertion
#: authenticate with Basic credentials as MLflow's default function does.
FALLBACK_OPTION = "gateway_basic_auth_fallback"

_VERSION = "v1"
_CONTEXT = b"mlflow-gateway-assertion.v1"
_ADMIN_VALUES = ("1", "0", "-")
_G_KEY = "_mlflow_gateway_authorization"

_logger = logging.getLogger(__name__)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    # Strict: the alphabet only, so one assertion has one spelling.
    if not text or any(c not in _B64_ALPHABET for c in text):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


_B64_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def _mac(secret: bytes, timestamp: str, admin: str, user_b64: str, method: str, path: str) -> bytes:
    message = "\n".join([timestamp, admin, user_b64, method, path]).encode("utf-8")
    return hmac.new(secret, _CONTEXT + b"\n" + message, hashlib.sha256).digest()


def sign(secret: bytes, username: str, method: str, path: str, admin: str = "-",
         now: int | None = None) -> str:
    """The header value the gateway sends (for tests and other signers)."""
    timestamp = str(int(time.time()) if now is None else now)
    user_b64 = _b64(username.encode("utf-8"))
    mac = _mac(secret, timestamp, admin, user_b64, method.upper(), path)
    return ".".join([_VERSION, timestamp, admin, user_b64, _b64(mac)])


def verify(secret: bytes, value: str, method: str, path: str,
           now: float | None = None) -> tuple[str, str] | None:
    """``(username, admin)`` when ``value`` is a valid assertion for this request, else None."""
    parts = value.split(".")
    if len(parts) != 5 or parts[0] != _VERSION:
        return None
    _, timestamp, admin, user_b64, mac_b64 = parts
    if not timestamp.isascii() or not timestamp.isdigit() or admin not in _ADMIN_VALUES:
        return None
    now = time.time() if now is None else now
    if abs(now - int(timestamp)) > MAX_AGE_SECONDS:
        return None
    try:
        mac = _unb64(mac_b64)
        username = _unb64(user_b64).decode("utf-8")
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return None
    expected = _mac(secret, timestamp, admin, user_b64, method.upper(), path)
    if not hmac.compare_digest(mac, expected) or not username:
        return None
    return username, admin


class _Secret:
    """The secret file's content, re-read when the file changes (rotation without restart)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._key = None
        self._value = None

    def get(self) -> bytes:
        path = os.environ.get(SECRET_FILE_ENV)
        if not path:
            raise RuntimeError(f"{SECRET_FILE_ENV} is not set")
        stat = os.stat(path)
        key = (path, stat.st_mtime_ns, stat.st_size)
        with self._lock:
            if key != self._key:
                with open(path, "rb") as file:
                    value = file.read().strip()
                if len(value) < MIN_SECRET_LEN:
                    raise RuntimeError(
                        f"the secret in {SECRET_FILE_ENV} ({path}) is shorter than "
                        f"{MIN_SECRET_LEN} bytes"
                    )
                self._key, self._value = key, value
            return self._value


_secret = _Secret()


@functools.lru_cache(maxsize=None)
def _basic_fallback_enabled() -> bool:
    from mlflow.server.auth.config import _get_auth_config_path

    config = configparser.ConfigParser()
    config.read(_get_auth_config_path())
    return config.getboolean("mlflow", FALLBACK_OPTION, fallback=False)


def _provision(username: str, admin: str) -> None:
    """Creates ``username`` on first sight and makes ``is_admin`` follow ``admin``.

    Done here, with MLflow's own store in this process, so the gateway needs no MLflow admin
    credential. The password is random and discarded: the account cannot log in with Basic.
    """
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS, RESOURCE_DOES_NOT_EXIST, ErrorCode
    from mlflow.server import auth

    wanted = {"1": True, "0": False}.get(admin)
    try:
        user = auth.store.get_user(username)
    except MlflowException as error:
        if error.error_code != ErrorCode.Name(RESOURCE_DOES_NOT_EXIST):
            raise
        try:
            auth.store.create_user(username, secrets.token_urlsafe(32), is_admin=bool(wanted))
            _logger.info("provisioned MLflow user %r (is_admin=%s)", username, bool(wanted))
            return
        except MlflowException as race:
            # Another worker created it first.
            if race.error_code != ErrorCode.Name(RESOURCE_ALREADY_EXISTS):
                raise
            user = auth.store.get_user(username)
    if wanted is not None and bool(user.is_admin) != wanted:
        auth.store.update_user(username, is_admin=wanted)
        invalidate = getattr(auth, "_invalidate_user_auth_cache", None)
        if invalidate is not None:
            invalidate(username)
        _logger.info("MLflow user %r: is_admin set to %s by the gateway", username, wanted)


def _unauthenticated() -> Response:
    from mlflow.server.auth import make_basic_auth_response

    return make_basic_auth_response()


def authenticate_request() -> Authorization | Response:
    """The ``authorization_function``: the asserted user, or MLflow's 401.

    MLflow calls it several times per request (the gate, ``sender_is_admin``, validators,
    after-request hooks); the first answer is kept for the rest of the request.
    """
    cached = g.get(_G_KEY)
    if cached is not None:
        return cached
    value = request.headers.get(ASSERTION_HEADER)
    if value is None:
        if _basic_fallback_enabled():
            from mlflow.server.auth import authenticate_request_basic_auth

            return authenticate_request_basic_auth()
        return _unauthenticated()
    try:
        secret = _secret.get()
    except (OSError, RuntimeError) as error:
        _logger.error("cannot check gateway assertions: %s", error)
        return Response("The gateway assertion secret is unavailable.", 500,
                        mimetype="text/plain")
    verified = verify(secret, value, request.method, request.path)
    if verified is None:
        _logger.warning("refused an invalid or expired gateway assertion for %s %s",
                        request.method, request.path)
        return _unauthenticated()
    username, admin = verified
    _provision(username, admin)
    authorization = Authorization("basic", {"username": username})
    g.setdefault(_G_KEY, authorization)
    return authorization
