"""A static HTTP server with byte ranges (as GDAL reads rasters over HTTP) that logs every path asked for.

Run as ``python range_server.py FOLDER LOG``: it serves ``FOLDER`` on a free port of 127.0.0.1, writes the port
on its first line of standard output, and appends each requested path to ``LOG``. It runs in a process of its
own: GDAL holds the interpreter while it reads, so a server thread in the test's process would never answer.
"""

import functools
import http.server
import sys
from pathlib import Path


class RangeHandler(http.server.SimpleHTTPRequestHandler):
    log_file: Path

    def log_message(self, *args) -> None:  # quiet: requests are logged to log_file instead
        pass

    def _record(self) -> None:
        with open(self.log_file, "a") as log:
            log.write(self.path + "\n")

    def do_HEAD(self) -> None:  # noqa: N802  (http.server's name)
        self._record()
        super().do_HEAD()

    def do_GET(self) -> None:  # noqa: N802
        self._record()
        wanted = self.headers.get("Range")
        path = Path(self.translate_path(self.path))
        if not wanted or not path.is_file():
            return super().do_GET()
        data = path.read_bytes()
        start, _, end = wanted.removeprefix("bytes=").partition("-")
        start, end = int(start), min(int(end) if end else len(data) - 1, len(data) - 1)
        self.send_response(206)
        self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        self.send_header("Content-Length", str(end - start + 1))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        self.wfile.write(data[start : end + 1])


if __name__ == "__main__":
    folder, log = sys.argv[1], Path(sys.argv[2])
    RangeHandler.log_file = log
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(RangeHandler, directory=folder))
    print(server.server_address[1], flush=True)
    server.serve_forever()
