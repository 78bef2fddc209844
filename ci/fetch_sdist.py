"""Downloads one source archive from a Python package index, unrun.

The bootstrap takes third-party sources (merlin-sok's HierarchicalKV
headers) from PyPI by exact version and sha256. `pip download` of an sdist
prepares its metadata: it fetches the package's build requirements
(unpinned, unhashed) and runs its build code. This reads the index's
simple page (PEP 503) instead, downloads the archive the page names,
checks its sha256 while it streams, and renames it into place only then.

    python3 ci/fetch_sdist.py NAME VERSION SHA256 DEST_DIR [--index-url URL]

The index is --index-url, else $PIP_INDEX_URL, else pip's configured
global.index-url, else https://pypi.org/simple (pip's extra indexes,
find-links and trusted hosts are not read); credentials in its URL
("https://user:token@host/simple") are sent as HTTP basic auth. Proxies
come from $https_proxy/$http_proxy, CA certificates from $PIP_CERT,
$REQUESTS_CA_BUNDLE or pip's global.cert. Prints the archive's path.
"""

import argparse
import hashlib
import html.parser
import http.client
import os
import re
import ssl
import subprocess
import sys
import urllib.parse
import urllib.request
from typing import List, Optional, Tuple

_DEFAULT_INDEX = "https://pypi.org/simple"
_TIMEOUT_SECS = 120
_CHUNK_BYTES = 1 << 20


class FetchError(Exception):
  """The archive could not be fetched; the message says where and why."""


def normalized_name(name: str) -> str:
  """PEP 503's project name, as index URLs spell it."""
  return re.sub(r"[-_.]+", "-", name).lower()


class _Links(html.parser.HTMLParser):
  """The hrefs of a simple page's anchors."""

  def __init__(self):
    super().__init__()
    self.hrefs: List[str] = []

  def handle_starttag(self, tag, attrs):
    if tag == "a":
      href = dict(attrs).get("href")
      if href:
        self.hrefs.append(href)


def archive_url(page_url: str, page: str, name: str, version: str) -> str:
  """The URL of `name`-`version`.tar.gz on a simple page (either spelling
  of the name: "merlin-sok" or "merlin_sok"), without its fragment."""
  wanted = {
      f"{spelling}-{version}.tar.gz".lower()
      for spelling in (name, normalized_name(name),
                       normalized_name(name).replace("-", "_"))
  }
  links = _Links()
  links.feed(page)
  for href in links.hrefs:
    try:
      url = urllib.parse.urljoin(page_url, href)
      path = urllib.parse.urlsplit(url).path
    except ValueError:  # e.g. "http://[::1": not the archive's link
      continue
    if urllib.parse.unquote(path.rsplit("/", 1)[-1]).lower() in wanted:
      return urllib.parse.urldefrag(url)[0]
  raise FetchError(f"{page_url} lists no {sorted(wanted)[0]} (among "
                   f"{len(links.hrefs)} files): is the version right?")


def _pip_config(key: str) -> str:
  """pip's configured `key` (e.g. "global.index-url"), or ""."""
  try:
    return subprocess.run(
        [sys.executable, "-m", "pip", "config", "get", key],
        capture_output=True, text=True, check=False).stdout.strip()
  except OSError:
    return ""


def opener_for(index_url: str) -> Tuple[urllib.request.OpenerDirector, str]:
  """An opener for the index and its files, and the index URL without
  the credentials it may carry (sent as basic auth to its host)."""
  handlers = []
  cafile = (os.environ.get("PIP_CERT") or os.environ.get("REQUESTS_CA_BUNDLE")
            or _pip_config("global.cert"))
  if cafile:
    handlers.append(urllib.request.HTTPSHandler(
        context=ssl.create_default_context(cafile=cafile)))
  parts = urllib.parse.urlsplit(index_url)
  if parts.username is not None:
    host = parts.netloc.rsplit("@", 1)[1]
    index_url = urllib.parse.urlunsplit(parts._replace(netloc=host))
    # Sent with the first request, as pip sends them: a private index may
    # answer an anonymous one 403 or 404, not 401.
    passwords = urllib.request.HTTPPasswordMgrWithPriorAuth()
    passwords.add_password(None, f"{parts.scheme}://{host}/",
                           urllib.parse.unquote(parts.username),
                           urllib.parse.unquote(parts.password or ""),
                           is_authenticated=True)
    handlers.append(urllib.request.HTTPBasicAuthHandler(passwords))
  return urllib.request.build_opener(*handlers), index_url


def fetch(opener: urllib.request.OpenerDirector, url: str, sha256: str,
          dest: str) -> None:
  """Downloads `url` to `dest` if its content has `sha256`: into a
  temporary beside it, renamed once checked (removed otherwise)."""
  tmp = f"{dest}.tmp-{os.getpid()}"
  digest = hashlib.sha256()
  try:
    try:
      with opener.open(url, timeout=_TIMEOUT_SECS) as response, \
          open(tmp, "wb") as out:
        while True:
          chunk = response.read(_CHUNK_BYTES)
          if not chunk:
            break
          digest.update(chunk)
          out.write(chunk)
    except (OSError, ValueError, http.client.HTTPException) as e:
      raise FetchError(f"downloading {url}: {e}") from e
    if digest.hexdigest() != sha256:
      raise FetchError(f"{url} has sha256 {digest.hexdigest()}, expected "
                       f"{sha256}; not using it")
    os.replace(tmp, dest)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def configured_index_url() -> str:
  """$PIP_INDEX_URL, else pip's global.index-url, else PyPI's."""
  return (os.environ.get("PIP_INDEX_URL") or _pip_config("global.index-url")
          or _DEFAULT_INDEX)


def fetch_sdist(name: str, version: str, sha256: str, dest_dir: str,
                index_url: str) -> str:
  """Downloads `name`-`version`.tar.gz from the index into `dest_dir`;
  its path."""
  if not re.fullmatch(r"[0-9a-f]{64}", sha256):
    raise FetchError(f"sha256 must be 64 lowercase hex digits, got "
                     f"{sha256!r}")
  try:
    opener, index_url = opener_for(index_url)
  except (OSError, ValueError) as e:  # a malformed URL, a missing CA file
    raise FetchError(
        f"index {re.sub(r'//[^/@]*@', '//***@', index_url)!r}: {e}") from e
  page_url = f"{index_url.rstrip('/')}/{normalized_name(name)}/"
  try:
    with opener.open(page_url, timeout=_TIMEOUT_SECS) as response:
      page = response.read().decode("utf-8", "replace")
  except (OSError, ValueError, http.client.HTTPException) as e:
    raise FetchError(f"reading the index page {page_url}: {e}") from e
  url = archive_url(page_url, page, name, version)
  dest = os.path.join(dest_dir, f"{name}-{version}.tar.gz")
  fetch(opener, url, sha256, dest)
  return dest


def main(argv: Optional[List[str]] = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("name")
  parser.add_argument("version")
  parser.add_argument("sha256")
  parser.add_argument("dest_dir")
  parser.add_argument("--index-url", default=None)
  args = parser.parse_args(argv)
  try:
    print(fetch_sdist(args.name, args.version, args.sha256, args.dest_dir,
                      args.index_url or configured_index_url()))
  except FetchError as e:
    print(f"fetch_sdist: {e}", file=sys.stderr)
    return 1
  return 0


if __name__ == "__main__":
  sys.exit(main())
