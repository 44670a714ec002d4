"""A Hugging Face Hub on 127.0.0.1: the file protocol huggingface_hub speaks, for one repo."""

import hashlib
import http.server
import threading
import time


class FakeHub:
    """Serves ``files`` (name -> bytes) of ``repo_id`` as the hub does.

    ``HEAD``/``GET /<repo>/resolve/<revision>/<name>`` with the hub's headers
    (``X-Repo-Commit``, the sha256 as ``X-Linked-Etag``, the size); a missing
    file is the hub's ``EntryNotFound``.  ``mode`` decides how (well) a file is
    sent: ``"ok"``, ``"truncated"`` (half of it, then the connection closes),
    ``"altered"`` (one byte changed) or ``"silent"`` (never answers).
    ``requests`` lists ``(method, path)`` of every request.
    """

    def __init__(self, repo_id, files, commit="0" * 39 + "1"):
        self.repo_id, self.files, self.commit = repo_id, files, commit
        self.mode, self.requests = "ok", []
        hub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self, body_wanted):
                hub.requests.append((self.command, self.path))
                if hub.mode == "silent":
                    time.sleep(5)
                    return
                prefix = f"/{hub.repo_id}/resolve/"
                if not self.path.startswith(prefix):
                    self.send_error(404); return
                revision, _, name = self.path[len(prefix):].partition("/")
                if name not in hub.files or revision not in ("main", hub.commit):
                    self.send_response(404)
                    self.send_header("X-Error-Code", "EntryNotFound")
                    self.send_header("Content-Length", "0")
                    self.end_headers(); return
                body = hub.files[name]
                self.send_response(200)
                self.send_header("X-Repo-Commit", hub.commit)
                self.send_header("ETag", f'"{hashlib.sha256(body).hexdigest()}"')
                self.send_header("X-Linked-Etag", f'"{hashlib.sha256(body).hexdigest()}"')
                self.send_header("X-Linked-Size", str(len(body)))
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if not body_wanted:
                    return
                if hub.mode == "truncated":
                    self.wfile.write(body[:len(body) // 2])
                    self.close_connection = True
                elif hub.mode == "altered":
                    self.wfile.write(body[:100] + bytes([body[100] ^ 0xFF]) + body[101:])
                else:
                    self.wfile.write(body)

            def do_HEAD(self):
                self._answer(False)

            def do_GET(self):
                self._answer(True)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()
