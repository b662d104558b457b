"""Credentials out of every text the project shows: error messages, logs, ledgers, STAC items.

URLs can carry a user and password (``https://user:secret@host/...``) or a
signed-URL token in their query (``?X-Amz-Signature=...``). :func:`redact_href`
drops both from one href, :func:`redact_text` from every URL in a text. The
root of the library's errors applies :func:`redact_text` to its message, so no
error the library raises can show a secret, whatever path led to it; the flows
apply it to their logs and to the errors of other libraries
(:func:`redact_exception`, :func:`redact_logs`).
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable
from typing import ParamSpec, TypeVar
from urllib.parse import urlparse

P = ParamSpec("P")
T = TypeVar("T")


def redact_href(href: str) -> str:
    """``href`` without credentials: user and password, and the query string (signed-URL tokens), removed.

    Never fails: an href that cannot be parsed keeps only its scheme and path."""
    parsed = urlparse(href)
    if len(parsed.scheme) <= 1 or parsed.scheme == "file":
        return href
    netloc = parsed.netloc.rpartition("@")[2]  # the host and port as written, whatever the port says
    return parsed._replace(netloc=netloc, query="", fragment="").geturl()


_URL = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://(?:[^\s/@]*@)?[^\s'\"),;]+")
"""A URL in free text; its user and password part, if any, runs to the first ``@`` before the path, so a
password holding ``;`` or ``,`` is matched whole."""


def redact_text(text: str) -> str:
    """``text`` with every URL in it passed through :func:`redact_href` (for logs, ledgers and artifacts)."""
    return _URL.sub(lambda m: redact_href(m.group()), text)


def redact_exception(exc: BaseException) -> BaseException:
    """``exc`` with :func:`redact_text` applied to its message (its arguments, and an OS error's ``strerror`` and
    file names), in place; its type, and an OS error's ``errno``, are kept for whoever decides on retries."""
    exc.args = tuple(redact_text(a) if isinstance(a, str) else a for a in exc.args)
    if isinstance(exc, OSError):
        for name in ("strerror", "filename", "filename2"):
            value = getattr(exc, name, None)
            if isinstance(value, str):
                setattr(exc, name, redact_text(value))
    return exc


def redacted(fn: Callable[P, T]) -> Callable[P, T]:
    """``fn``, whose exceptions leave it with their messages redacted (:func:`redact_exception`): what a Prefect
    task's state shows of them."""

    @functools.wraps(fn)
    def call(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            redact_exception(exc)  # in place: the same exception goes on, its message cleaned
            raise

    return call


def redact_logs() -> None:
    """Make every log record of this process carry its message redacted (:func:`redact_text`), whatever logger,
    handler or formatter shows it: the record factory formats the message and redacts it as it is made."""
    make = logging.getLogRecordFactory()
    if getattr(make, "redacts", False):
        return

    def redacted(*args, **kwargs) -> logging.LogRecord:
        record = make(*args, **kwargs)
        message = record.getMessage()
        clean = redact_text(message)
        if clean != message:
            record.msg, record.args = clean, ()
        if record.exc_info and record.exc_info[1] is not None:
            redact_exception(record.exc_info[1])
        return record

    redacted.redacts = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(redacted)
