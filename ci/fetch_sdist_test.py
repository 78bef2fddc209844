"""Tests of fetch_sdist against an index served on a loopback port."""

import base64
import contextlib
import functools
import hashlib
import http.server
import os
import random
import threading

import pytest

import fetch_sdist

_ARCHIVE = b"not really a tarball, but bytes with a known hash" * 1000
_SHA256 = hashlib.sha256(_ARCHIVE).hexdigest()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):

  def log_message(self, *args):  # not on the tests' stderr
    del args


class _BasicAuthHandler(_QuietHandler):
  """Serves only requests with user "u", password "p:w" (basic auth), and
  answers others 404, as private indexes may (no challenge to answer)."""

  def do_GET(self):
    wanted = "Basic " + base64.b64encode(b"u:p:w").decode()
    if self.headers.get("Authorization") != wanted:
      self.send_response(404)
      self.end_headers()
      return
    super().do_GET()


@contextlib.contextmanager
def _index(root, handler_class=_QuietHandler):
  """An HTTP index serving folder `root`; its simple URL."""
  handler = functools.partial(handler_class, directory=str(root))
  server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
  thread = threading.Thread(target=server.serve_forever, daemon=True)
  thread.start()
  try:
    yield f"http://127.0.0.1:{server.server_address[1]}/simple"
  finally:
    server.shutdown()
    server.server_close()


def _publish(root, page_links, files):
  """Writes simple/merlin-sok/index.html with `page_links` (href, text)
  and the `files` (path under root: bytes)."""
  page = root / "simple" / "merlin-sok"
  page.mkdir(parents=True)
  anchors = "".join(f'<a href="{href}">{text}</a>\n'
                    for href, text in page_links)
  (page / "index.html").write_text(f"<html><body>{anchors}</body></html>")
  for path, data in files.items():
    (root / path).parent.mkdir(parents=True, exist_ok=True)
    (root / path).write_bytes(data)


def test_fetches_the_archive_the_page_names(tmp_path):
  root, dest = tmp_path / "index", tmp_path / "dest"
  dest.mkdir()
  _publish(root, [
      ("../../files/merlin-sok-2.0.0.tar.gz#sha256=00", "merlin-sok-2.0.0"),
      (f"../../files/merlin_sok-2.1.0.tar.gz#sha256={_SHA256}", "2.1.0"),
  ], {"files/merlin_sok-2.1.0.tar.gz": _ARCHIVE,
      "files/merlin-sok-2.0.0.tar.gz": b"older"})
  with _index(root) as url:
    path = fetch_sdist.fetch_sdist("merlin-sok", "2.1.0", _SHA256, str(dest),
                                   url)
  assert path == str(dest / "merlin-sok-2.1.0.tar.gz")
  with open(path, "rb") as f:
    assert f.read() == _ARCHIVE
  assert os.listdir(dest) == ["merlin-sok-2.1.0.tar.gz"]


def test_credentials_in_the_index_url_are_sent_as_basic_auth(tmp_path):
  root, dest = tmp_path / "index", tmp_path / "dest"
  dest.mkdir()
  _publish(root, [("../../f/merlin-sok-2.1.0.tar.gz", "x")],
           {"f/merlin-sok-2.1.0.tar.gz": _ARCHIVE})
  with _index(root, _BasicAuthHandler) as url:
    with_credentials = url.replace("http://", "http://u:p%3Aw@")
    fetch_sdist.fetch_sdist("merlin-sok", "2.1.0", _SHA256, str(dest),
                            with_credentials)
    assert (dest / "merlin-sok-2.1.0.tar.gz").read_bytes() == _ARCHIVE
    with pytest.raises(fetch_sdist.FetchError, match="404") as e:
      fetch_sdist.fetch_sdist("merlin-sok", "2.1.0", _SHA256, str(dest),
                              url.replace("http://", "http://u:wrong@"))
    assert "wrong" not in str(e.value)
  # A URL that does not parse is a FetchError naming it, its secret not.
  with pytest.raises(fetch_sdist.FetchError, match="nonnumeric port") as e:
    fetch_sdist.fetch_sdist("merlin-sok", "2.1.0", _SHA256, str(dest),
                            "https://u:secret@host:port/simple")
  assert "secret" not in str(e.value)


def test_an_archive_of_another_hash_is_not_kept(tmp_path):
  root, dest = tmp_path / "index", tmp_path / "dest"
  dest.mkdir()
  (dest / "merlin-sok-2.1.0.tar.gz").write_bytes(b"kept")
  _publish(root, [("../../f/merlin-sok-2.1.0.tar.gz", "x")],
           {"f/merlin-sok-2.1.0.tar.gz": _ARCHIVE + b"tampered"})
  with _index(root) as url, pytest.raises(fetch_sdist.FetchError) as e:
    fetch_sdist.fetch_sdist("merlin-sok", "2.1.0", _SHA256, str(dest), url)
  assert "merlin-sok-2.1.0.tar.gz has sha256" in str(e.value)
  assert f"expected {_SHA256}" in str(e.value)
  # The earlier file is left as it was, and no temporary stays.
  assert os.listdir(dest) == ["merlin-sok-2.1.0.tar.gz"]
  assert (dest / "merlin-sok-2.1.0.tar.gz").read_bytes() == b"kept"


def test_a_version_the_index_lacks_is_named(tmp_path):
  root = tmp_path / "index"
  _publish(root, [("../../f/merlin-sok-2.0.0.tar.gz", "x")], {})
  with _index(root) as url, pytest.raises(fetch_sdist.FetchError,
                                          match="lists no merlin-sok-2.1.0"):
    fetch_sdist.fetch_sdist("merlin-sok", "2.1.0", _SHA256, str(tmp_path),
                            url)


def test_main_says_why_it_failed(tmp_path, capsys):
  with _index(tmp_path) as url:  # no page for the project
    assert fetch_sdist.main(
        ["merlin-sok", "2.1.0", _SHA256, str(tmp_path), "--index-url",
         url]) == 1
  err = capsys.readouterr().err
  assert err.startswith("fetch_sdist: reading the index page ")
  assert "/simple/merlin-sok/" in err
  assert fetch_sdist.main(
      ["merlin-sok", "2.1.0", "ABC", str(tmp_path), "--index-url", url]) == 1
  assert "sha256 must be 64 lowercase hex digits" in capsys.readouterr().err


def test_the_index_comes_from_the_environment_first(monkeypatch):
  monkeypatch.setenv("PIP_INDEX_URL", "https://mirror.example/simple")
  assert fetch_sdist.configured_index_url() == "https://mirror.example/simple"


def test_any_index_page_gives_a_url_or_a_fetch_error():
  # Fuzz (fixed seed): a page is the index's to write; archive_url finds
  # the archive's link or says the page lacks it, whatever the page holds.
  rng = random.Random(20261207)
  pieces = ['<a href="', '">', "</a>", "merlin-sok-2.1.0.tar.gz", "#sha256=",
            "../", "%2e", "\x00", "<", ">", '"', "'", "&amp;", "\ufeff",
            "http://[::1", "//", "a"]
  found = 0
  for _ in range(3000):
    page = "".join(rng.choice(pieces) if rng.random() < 0.8 else
                   chr(rng.randrange(0x110000 if rng.random() < 0.1 else 128))
                   for _ in range(rng.randrange(40)))
    try:
      url = fetch_sdist.archive_url("https://index.example/simple/m/", page,
                                    "merlin-sok", "2.1.0")
    except fetch_sdist.FetchError as e:
      assert "lists no merlin-sok-2.1.0.tar.gz" in str(e)
      continue
    found += 1
    assert url.endswith("merlin-sok-2.1.0.tar.gz") and "#" not in url
  assert found > 0  # the fuzz reaches the finding path too
