"""The feature list: a model's features, their slots and how they are built.

A feature list config is a text file, one entry per line:

    # comments and blank lines are skipped
    column_name: user_id, doc_id, ...
    cache_column: uid
    feed_name=doc_id; shared=true; feature_id=368192
    cache_name=user_cache; capacity=1000; timeout=60
    feature_name=f_doc_id; depend=doc_id; method=DirectString; slot=200
    feature_name=f_user_id-f_doc_id; depend=user_id,doc_id; method=Combine; slot=505

Entry lines are `key=value` pairs separated by whitespace (usually `; `);
lines starting with `feed` are Feeds, with `cache` Caches, all others
Features. Keys a class does not know are ignored. `FeatureList.parse` reads
such a file (local path or any tf.io.gfile URI) once per process and caches it.
"""

import dataclasses
import re
import threading
from collections import defaultdict
from typing import Any, Dict, Iterator, List, Optional, Set, Tuple, Union

from absl import flags
from absl import logging
import tensorflow as tf

from monolith.native_training import utils
from monolith.native_training.data import utils as data_utils

FLAGS = flags.FLAGS

_TRUE_STRINGS = frozenset({"true", "yes", "t", "y", "1"})
# A key is a word at the start of the line or after whitespace or ';' (as the
# original, which took the text after the last space before each '=').
_KEY_RE = re.compile(r"(?:^|(?<=[\s;]))([^\s;=]+)\s*=")
_cache: Dict[Tuple[str, bool], "FeatureList"] = {}


def _to_bool(value: Union[str, bool, None]) -> bool:
  if isinstance(value, str):
    return value.strip().lower() in _TRUE_STRINGS
  return bool(value)


def _to_list(value: Union[str, List[str], None]) -> Optional[List[str]]:
  """Splits a comma list, dropping whitespace and quotes around items."""
  if not isinstance(value, str):
    return value
  return [
      item.strip().replace('"', "").replace("'", "")
      for item in value.strip().split(",")
  ]


def _to_int(value: Union[str, int, None]) -> Optional[int]:
  return int(value) if isinstance(value, str) else value


def _strip_prefixes(name: str) -> str:
  """`fc_a-f_b` -> `a-b`: drops the fc_/f_ prefix of every combined term."""
  terms = []
  for term in name.split("-"):
    if term.startswith("fc_"):
      term = term[3:]
    elif term.startswith("f_"):
      term = term[2:]
    terms.append(term)
  return "-".join(terms).lower()


@dataclasses.dataclass
class Feed:
  """An input column a feature can depend on."""
  feed_name: Optional[str] = None
  shared: bool = False
  feature_id: Optional[int] = None

  def __post_init__(self):
    self.shared = _to_bool(self.shared)
    self.feature_id = _to_int(self.feature_id)

  @property
  def name(self) -> Optional[str]:
    return self.feed_name


@dataclasses.dataclass
class Cache:
  """A feature cache."""
  cache_column: Optional[str] = None
  cache_name: Optional[str] = None
  capacity: Optional[int] = None
  timeout: Optional[int] = None
  cache_type: Optional[str] = None
  cache_key_class: Optional[str] = None

  def __post_init__(self):
    self.capacity = _to_int(self.capacity)
    self.timeout = _to_int(self.timeout)

  @property
  def name(self) -> str:
    if self.cache_name is not None:
      return self.cache_name
    if self.cache_key_class is not None:
      return self.cache_key_class
    if self.cache_column is not None:
      return "cache_column"
    raise ValueError(f"{self} has no cache_name, cache_key_class or "
                     "cache_column")


@dataclasses.dataclass
class Feature:
  """One feature: its name, slot and extraction method."""
  feature_name: Optional[str] = None
  depend: Optional[List[str]] = None
  method: Optional[str] = None
  slot: Optional[int] = None
  args: Optional[List[str]] = None
  feature_version: Optional[int] = None
  shared: bool = False
  cache_keys: Optional[List[str]] = None
  need_raw: bool = False
  feature_id: Optional[int] = None
  input_optional: Optional[List[bool]] = None
  feature_group: Optional[List[str]] = None

  def __post_init__(self):
    self.feature_group = _to_list(self.feature_group)
    self.depend = _to_list(self.depend)
    self.args = _to_list(self.args)
    self.cache_keys = _to_list(self.cache_keys)
    if isinstance(self.input_optional, str):
      self.input_optional = [
          item == "true" for item in _to_list(self.input_optional)
      ]
    self.slot = _to_int(self.slot)
    self.shared = _to_bool(self.shared)
    self.need_raw = _to_bool(self.need_raw)
    self.feature_id = _to_int(self.feature_id)
    self.feature_version = _to_int(self.feature_version)

  def __str__(self) -> str:
    """The config-line form: `key=value` pairs joined by ';'."""
    terms = []
    for field in dataclasses.fields(self):
      value = getattr(self, field.name)
      if value is None or value is False:
        continue
      if value is True:
        terms.append(f"{field.name}=true")
      elif isinstance(value, list):
        text = ",".join(
            str(v).lower() if isinstance(v, bool) else str(v) for v in value)
        terms.append(f"{field.name}={text}")
      else:
        terms.append(f"{field.name}={value}")
    return ";".join(terms)

  @property
  def name(self) -> str:
    """The feature name without fc_/f_ prefixes, lower case."""
    return _strip_prefixes(self.feature_name)

  @property
  def depend_strip_prefix(self) -> List[str]:
    return [_strip_prefixes(dep) for dep in self.depend]


class FeatureList:
  """The features of a model, by name (with or without fc_/f_) and by slot."""

  _lock = threading.Lock()

  def __init__(self, column_name: Optional[Set[str]], feeds: Dict[str, Feed],
               caches: Dict[str, Cache], features: Dict[str, Feature]):
    self.column_name = column_name
    self.feeds = feeds
    self.caches = caches
    self.features = features
    self._by_slot = defaultdict(list)
    # By Feature.name (no prefixes, per term too: fc_a-f_b is a-b); the
    # first of a name, in file order.
    self._by_bare_name = {}
    for feature in features.values():
      self._by_slot[feature.slot].append(feature)
      self._by_bare_name.setdefault(feature.name, feature)
    utils.add_to_collections("feature_list", self)

  def __getitem__(self, item: Union[int, str]) -> Feature:
    """The feature with slot `item` (int) or name `item` (str).

    A name matches with or without its fc_/f_ prefix, also per term of a
    combined `a-b` name.

    Raises:
      KeyError: no such feature.
    """
    if utils.is_integer(item):
      if int(item) in self._by_slot:
        return self._by_slot[int(item)][0]
      raise KeyError(f"there is no feature with slot {item}")
    if not isinstance(item, str):
      raise KeyError(f"there is no feature {item!r} (give a feature name or "
                     "a slot number)")
    item = item.strip()
    candidates = [item, f"f_{item}", f"fc_{item}"]
    if "-" in item:
      terms = item.split("-")
      candidates += ["-".join(f"{p}{t}" for t in terms) for p in ("fc_", "f_")]
    for name in candidates:
      if name in self.features:
        return self.features[name]
    if item in self._by_bare_name:
      return self._by_bare_name[item]
    raise KeyError(f"there is no feature {item}")

  def get(self, item: Union[int, str], default: Any = None) -> Any:
    try:
      return self[item]
    except KeyError:
      return default

  def get_with_slot(self, slot: int) -> List[Feature]:
    return list(self._by_slot.get(slot, []))

  def __len__(self) -> int:
    return len(self.features)

  def __contains__(self, item: Union[int, str]) -> bool:
    return self.get(item) is not None

  def __iter__(self) -> Iterator[Feature]:
    return iter(self.features.values())

  @classmethod
  def parse(cls, fname: Optional[str] = None,
            use_old_name: bool = True) -> "FeatureList":
    """Reads a feature list config, once per (file, use_old_name).

    Args:
      fname: the config; defaults to --feature_list.
      use_old_name: key features by feature_name as written (True) or by
        Feature.name, without prefixes (False).

    Raises:
      ValueError: no file given, a directory, or a malformed line (named
        file:line).
    """
    fname = fname or _feature_list_flag()
    if not fname:
      raise ValueError("no feature list: pass a file name or set "
                       "--feature_list")
    with cls._lock:
      key = (fname, use_old_name)
      if key not in _cache:
        if tf.io.gfile.isdir(fname):
          # Read as a file, it gave no lines: a list without features.
          raise ValueError(f"{fname} is a directory, not a feature list "
                           "config file")
        with tf.io.gfile.GFile(fname, "r") as stream:
          try:
            _cache[key] = cls._parse_lines(fname, stream, use_old_name)
          except UnicodeDecodeError as e:
            raise ValueError(f"{fname}: not UTF-8 text ({e})") from None
      feature_list = _cache[key]
      # In every graph that parses it, not only the first (the cache is the
      # process's): an export's graph found none in its collection, and
      # ParserArgs then fell back to --feature_list or to no list at all.
      if not any(registered is feature_list for registered in
                 tf.compat.v1.get_collection("feature_list")):
        utils.add_to_collections("feature_list", feature_list)
      return feature_list

  @classmethod
  def _parse_lines(cls, fname: str, lines, use_old_name: bool) -> "FeatureList":
    column_name = None
    feeds, caches, features = {}, {}, {}
    ignored_keys = set()
    for lineno, line in enumerate(lines, start=1):
      if lineno == 1:
        line = line.lstrip("\ufeff")  # a byte-order mark (Windows editors)
      line = line.strip()
      if not line or line.startswith("#"):
        continue
      where = f"{fname}:{lineno}"
      # "column_name : a, b" or "column_name=a, b" (the original took both).
      header = re.match(r"(column_name|cache_column)\s*[:=]?\s*(.*)", line)
      if header and header.group(1) == "column_name":
        column_name = {c.strip() for c in header.group(2).split(",")}
        continue
      if header:
        cache = Cache(cache_column=header.group(2).strip())
        caches[cache.name] = cache
        continue
      if line.startswith("feed"):
        entry_class = Feed
      elif line.startswith("cache"):
        entry_class = Cache
      else:
        entry_class = Feature
      params = _key_values(line, where)
      # Skipped where the original loaded them (a feature or feed it filed
      # under None with use_old_name); refused where it failed too.
      lenient = entry_class is Feed or (entry_class is Feature and
                                        use_old_name)
      if not params:
        if not lenient:
          raise ValueError(f"{where}: expected key=value pairs: {line}")
        logging.warning("%s: no key=value pairs, line skipped: %s", where,
                        line)
        continue
      known = {f.name for f in dataclasses.fields(entry_class)}
      ignored_keys.update(set(params) - known)
      try:
        entry = entry_class(**{k: v for k, v in params.items() if k in known})
        if entry_class is Feed:
          feeds[entry.name] = entry
        elif entry_class is Cache:
          caches[entry.name] = entry
      except ValueError as e:
        raise ValueError(f"{where}: {e}: {line}") from e
      if entry_class is Feature:
        if not entry.feature_name:
          if not lenient:
            raise ValueError(
                f"{where}: a feature needs a feature_name: {line}")
          # The original filed it under None, where no lookup finds it.
          logging.warning("%s: a feature without a feature_name, skipped: "
                          "%s", where, line)
          continue
        features[entry.feature_name if use_old_name else entry.name] = entry
    if ignored_keys:
      logging.info("%s: ignored keys %s", fname, ", ".join(sorted(ignored_keys)))
    return cls(column_name, feeds, caches, features)


def _key_values(line: str, where: str) -> Dict[str, str]:
  """`a=1; b=x, y;` -> {'a': '1', 'b': 'x, y'}; {} for a line without."""
  matches = list(_KEY_RE.finditer(line))
  if not matches:
    return {}
  params = {}
  for match, following in zip(matches, matches[1:] + [None]):
    end = following.start() if following else len(line)
    value = line[match.end():end].strip().rstrip(",;").strip()
    if "=" in value:
      raise ValueError(
          f"{where}: the value of {match.group(1)} holds '=' ({value!r}): "
          f"separate a key from the value before it by whitespace or ';': "
          f"{line}")
    params[match.group(1)] = value
  return params


def _feature_list_flag() -> Optional[str]:
  # --feature_list is defined by the tools that take it, if any is linked in.
  return FLAGS["feature_list"].value if "feature_list" in FLAGS else None


def default_feature_list() -> Optional[FeatureList]:
  """The --feature_list config, or None without the flag."""
  return FeatureList.parse() if _feature_list_flag() else None


def get_feature_name_and_slot(item: Any) -> Tuple[str, Optional[int]]:
  """The (name, slot) of a slot number, a feature name or a feature column.

  Uses the --feature_list config when one is set; otherwise names follow the
  slot naming conventions of monolith.native_training.data.utils.
  """
  if utils.is_integer(item):  # numpy's too; not a bool ("slot_True")
    item = int(item)
    feature_list = default_feature_list()
    if feature_list is not None and item in feature_list:
      return feature_list[item].feature_name, item
    return data_utils.get_slot_feature_name(item), item
  if isinstance(item, str):
    feature_list = default_feature_list()
    if feature_list is not None and item in feature_list:
      return item, feature_list[item].slot
    return item, data_utils.get_slot_from_feature_name(item)
  if hasattr(item, "feature_name") and hasattr(item, "feature_slot"):
    return item.feature_name, item.feature_slot
  raise TypeError("expected a slot, a feature name or a feature column, got "
                  f"{type(item).__name__}")
