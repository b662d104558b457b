"""redact.py: no credential or signed-URL secret in error messages, log records or exceptions."""

import errno
import logging

from pansharp_dist.errors import InputNotFoundError
from pansharp_dist.redact import redact_exception, redact_href, redact_logs, redact_text


def test_no_error_log_or_ledger_shows_a_credential(tmp_path, caplog):
    href = "https://ana:pa;ss,w@rd@store.example/scenes/pan.tif?X-Amz-Signature=s3cr3t&X-Amz-Credential=AKIA"
    for text in (
        str(InputNotFoundError(f"PAN not found: {href}; check the URL")),
        redact_text(f"failed: {href}, retry"),
        redact_href(href),
    ):
        assert "pa;ss" not in text and "s3cr3t" not in text and "AKIA" not in text and "store.example" in text
    assert redact_href("https://u:p@host.example:99999/x.tif") == "https://host.example:99999/x.tif"  # never fails
    redact_logs()
    with caplog.at_level(logging.INFO):
        logging.getLogger("prefect.flow_runs").info("reading %s", href)
    assert "s3cr3t" not in caplog.text and "pa;ss" not in caplog.text
    error = redact_exception(OSError(errno.ECONNRESET, f"reset by {href}"))
    assert error.errno == errno.ECONNRESET and "s3cr3t" not in str(error)


def test_hrefs_and_texts_lose_their_credentials():
    assert (
        redact_href("https://user:secret@host.example:8443/a/b.tif?X-Amz-Signature=abc")
        == "https://host.example:8443/a/b.tif"
    )
    assert redact_href("/data/scenes/a.tif") == "/data/scenes/a.tif"
    assert redact_text("PAN s3://k:s@b/x.tif?token=1 is damaged") == "PAN s3://b/x.tif is damaged"
