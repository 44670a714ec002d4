"""Weights download on demand, against a real HTTP server on 127.0.0.1 started here."""

import http.server
import socket
import threading
import time

import numpy as np
import pytest

from sktransfer import TransferClassifier
from sktransfer.backbones import catalog
from sktransfer.backbones import weights as weights_mod
from sktransfer.backbones.weights import WeightsDownloadError, WeightsNotFoundError

from conftest import requires_imagenet

FILE = "mobilenet_v2-b0353104.pth"  # torchvision's name for MobileNet_V2_Weights.IMAGENET1K_V1


class Server:
    """Serves one file under torchvision's name; ``mode`` decides how (well) it is sent."""

    def __init__(self, body):
        self.body, self.mode, self.requests = body, "ok", []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's name
                server.requests.append(self.path)
                if server.mode == "silent":  # accept, then never answer
                    time.sleep(5)
                    return
                if self.path != f"/{FILE}" or server.mode == "404":
                    self.send_error(404)
                    return
                body = server.body
                if server.mode == "altered":
                    body = body[:1000] + bytes([body[1000] ^ 0xFF]) + body[1001:]
                self.send_response(200)
                self.send_header("Content-Length", str(len(server.body)))
                self.end_headers()
                # truncated: the connection closes halfway through the declared length
                self.wfile.write(body[: len(body) // 2] if server.mode == "truncated" else body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(fresh_torch_home, monkeypatch):
    """The real MobileNetV2 file served on 127.0.0.1; the package copy hidden, downloads allowed."""
    body = weights_mod.find_weights_file(weights_mod.tv_models.MobileNet_V2_Weights.IMAGENET1K_V1)
    body = body.read_bytes()
    monkeypatch.setattr(catalog, "KNOWN_PACKAGES", {})  # as on a machine without it
    monkeypatch.setenv("SKTRANSFER_OFFLINE", "0")
    srv = Server(body)
    monkeypatch.setenv("SKTRANSFER_WEIGHTS_URL", srv.url)
    yield srv
    srv.stop()


def _fit(**params):
    X = np.random.RandomState(0).randint(0, 255, (4, 32, 32, 3)).astype(np.uint8)
    return TransferClassifier(weights="IMAGENET1K_V1", image_size=32, epochs=1, cache=False,
                              random_state=0, **params).fit(X, [0, 1, 0, 1])


def _left(folder):
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


@requires_imagenet
def test_first_fit_downloads_checked_file_and_second_fit_does_not_connect(server,
                                                                           fresh_torch_home):
    first = _fit()
    assert server.requests == [f"/{FILE}"]
    assert _left(fresh_torch_home) == [FILE]
    assert (fresh_torch_home / FILE).read_bytes() == server.body
    second = _fit()
    assert server.requests == [f"/{FILE}"]  # no second connection
    X = np.random.RandomState(1).randint(0, 255, (3, 32, 32, 3)).astype(np.uint8)
    np.testing.assert_array_equal(first.predict_proba(X), second.predict_proba(X))


@requires_imagenet
@pytest.mark.parametrize("mode, reason", [("truncated", ""), ("altered", "invalid hash"),
                                          ("404", "404")])
def test_a_bad_download_is_a_clear_error_and_leaves_nothing(server, fresh_torch_home,
                                                            mode, reason):
    server.mode = mode
    with pytest.raises(WeightsDownloadError) as info:
        _fit()
    message = str(info.value)
    for part in (FILE, f"{server.url}/{FILE}", str(fresh_torch_home), "by hand", reason):
        assert part in message
    assert _left(fresh_torch_home) == []  # no partial file, no corrupt file


@requires_imagenet
def test_a_server_that_never_answers_times_out(server, fresh_torch_home, monkeypatch):
    monkeypatch.setattr(weights_mod, "DOWNLOAD_TIMEOUT", 1)
    server.mode = "silent"
    start = time.monotonic()
    with pytest.raises(WeightsDownloadError, match="timed out"):
        _fit()
    assert time.monotonic() - start < 4
    assert _left(fresh_torch_home) == []


@requires_imagenet
def test_server_down_is_a_clear_error_within_seconds(server, fresh_torch_home, monkeypatch):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("SKTRANSFER_WEIGHTS_URL", f"http://127.0.0.1:{port}")
    start = time.monotonic()
    with pytest.raises(WeightsDownloadError, match="refused") as info:
        _fit()
    assert time.monotonic() - start < 5
    assert f"127.0.0.1:{port}/{FILE}" in str(info.value)
    assert _left(fresh_torch_home) == []


@requires_imagenet
def test_offline_never_connects(server, fresh_torch_home, monkeypatch):
    monkeypatch.setenv("SKTRANSFER_OFFLINE", "1")
    with pytest.raises(WeightsNotFoundError) as info:
        _fit()
    assert not isinstance(info.value, WeightsDownloadError)
    assert FILE in str(info.value) and "SKTRANSFER_OFFLINE" in str(info.value)
    assert server.requests == []


@requires_imagenet
def test_download_ahead_into_a_folder_for_an_air_gapped_machine(server, tmp_path):
    from sktransfer.cli import main

    target = tmp_path / "carry"
    assert main(["weights", "download", "mobilenet_v2:IMAGENET1K_V1", "--to", str(target)]) == 0
    assert _left(target) == [FILE]
    assert main(["weights", "download", "mobilenet_v2:IMAGENET1K_V1", "--to", str(target)]) == 0
    assert server.requests == [f"/{FILE}"]  # already there: verified, not fetched again


@requires_imagenet
@pytest.mark.parametrize("params, message", [
    ({"unfreeze": 20}, "unfreeze=20 but backbone 'mobilenet' has only 19 blocks"),
    ({"lr": -1.0}, "'lr' parameter"),
    ({"tta": 0}, "'tta' parameter"),
])
def test_an_impossible_setting_makes_no_request(server, fresh_torch_home, params, message):
    with pytest.raises(ValueError, match=message):
        _fit(**params)
    assert server.requests == [] and _left(fresh_torch_home) == []
