"""Random Instance / Example / ExampleBatch records, warmup requests and dumps.

Generates records shaped like a model's traffic from its feature names, for
TF Serving warmup files (`gen_prediction_log`, `gen_warmup_file`, and
`warmup_data_gen --gen_type=random`) and for test dumps
(`gen_random_data_file`).

Sparse features carry v2 fids (`slot << 48 | hash`, 48-bit hash, slots up to
32767: the top bit is reserved, and readers take bits 48-62 for the slot);
`Instance.fid` carries v1 fids (`slot << 54 | hash`, slots up to 1023). Features named like lists (`_recent`, `_cp`, combined `a-b` names, or
methods Combine / VectorTopString) get 0 to 2 fids, others one; with
probability `drop_rate` a feature is left empty, except the user and item id
slots (1 and 200). Dense features get `shape` values of their dtype. Line ids
get uid `1 << 48 | hash`, item_id `200 << 48 | hash`, req_time, sample_rate
1.0 and actions, or the LineId fields listed as extra features. Labels are 0
or 1.

Randomness comes from one `random.Random` passed down: `ParserArgs.seed`
makes every output byte-identical across runs (req_time is then the fixed
SEEDED_REQ_TIME instead of the current time).
"""

import collections.abc
import dataclasses
import functools
import numbers
import random
import time
from typing import (Any, Callable, Dict, Iterator, List, Optional, Sequence,
                    Set)

from absl import logging
from google.protobuf import descriptor
import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2

from idl.matrix.proto import example_pb2
from idl.matrix.proto import feature_pb2
from idl.matrix.proto import line_id_pb2
from idl.matrix.proto import proto_parser_pb2
from monolith.native_training import utils
from monolith.native_training.data import utils as data_utils
from monolith.native_training.data.feature_list import Feature
from monolith.native_training.data.feature_list import FeatureList
from monolith.native_training.data.feature_list import default_feature_list
from monolith.native_training.model_export import dump_format
from monolith.native_training.model_export import export_context
from monolith.native_training.model_export import warmup_io

MASK_V1 = (1 << 54) - 1
MAX_SLOT_V1 = (1 << (64 - 54)) - 1
MASK_V2 = (1 << 48) - 1
# 15 bits: a v2 fid's top bit is reserved (the original's FIDV2 refuses
# it, and slots are read as bits 48-62).
MAX_SLOT_V2 = (1 << (63 - 48)) - 1
# req_time of seeded runs: the current time would make them differ.
SEEDED_REQ_TIME = 1_700_000_000
# The user id and item id slots: always present, with one fid.
_ALWAYS_PRESENT_SLOTS = frozenset({1, 200})
_LIST_METHODS = frozenset({"Combine", "VectorTopString"})
_LABEL = "label"
_VARIANT_ALIASES = {"examplebatch": "example_batch"}

_CppType = descriptor.FieldDescriptor
_FLOAT_CPP_TYPES = frozenset({_CppType.CPPTYPE_FLOAT, _CppType.CPPTYPE_DOUBLE})
_INT_CPP_TYPES = frozenset({
    _CppType.CPPTYPE_INT32, _CppType.CPPTYPE_INT64, _CppType.CPPTYPE_UINT32,
    _CppType.CPPTYPE_UINT64
})


class FeatureMeta:
  """What to generate for one feature: name, slot, shape and dtype.

  shape is -1 for a sparse feature (the default when a slot is given), else
  the number of dense values (default 1). dtype defaults to the LineId
  field's type for line id names, else int64 for sparse and float32 for
  dense features. `extra` is the feature list's Feature, when known.
  """

  line_id_fields = {f.name: f for f in line_id_pb2.LineId.DESCRIPTOR.fields}
  dtypes = {
      _CppType.CPPTYPE_FLOAT: tf.float32,
      _CppType.CPPTYPE_DOUBLE: tf.float32,
      _CppType.CPPTYPE_UINT32: tf.int32,
      _CppType.CPPTYPE_INT32: tf.int32,
      _CppType.CPPTYPE_UINT64: tf.int64,
      _CppType.CPPTYPE_INT64: tf.int64,
      _CppType.CPPTYPE_BOOL: tf.bool,
      _CppType.CPPTYPE_STRING: tf.string,
  }

  def __init__(self,
               name: str,
               slot: Optional[int] = None,
               shape: Optional[int] = None,
               dtype: Any = None,
               extra: Any = None):
    self.name = name
    self.slot = slot
    if shape is None:
      shape = 1 if slot is None else -1
    self.shape = shape
    if dtype is None and name in self.line_id_fields:
      dtype = self.dtypes.get(self.line_id_fields[name].cpp_type)
    if dtype is None:
      dtype = tf.float32 if slot is None else tf.int64
    self.dtype = tf.as_dtype(dtype)
    self.extra = extra

  def __repr__(self) -> str:
    return (f"FeatureMeta(name={self.name!r}, slot={self.slot}, "
            f"shape={self.shape}, dtype={self.dtype.name})")


@dataclasses.dataclass
class ParserArgs:
  """What random warmup data to generate.

  Fields left None are taken from the default graph's collection of the same
  name, where training code registers them (see
  monolith.native_training.utils.add_to_collections); feature_list falls
  back to --feature_list.

  Attributes:
    model_name: model_spec.name of the requests.
    fidv1_features: instance variant: slots whose v1 fids go to Instance.fid.
    fidv2_features: instance variant: names of sparse Instance features.
    sparse_features: example / example_batch variants: sparse feature names.
    dense_features: dense feature names; one named `label` sets the label
      count instead of becoming a feature.
    dense_feature_shapes: values per dense feature (default 1 each).
    dense_feature_types: dtype per dense feature (default float32 each).
    extra_features: LineId fields to fill (default uid, item_id, req_time,
      sample_rate, actions).
    extra_feature_shapes: values per repeated LineId field (default 1 each).
    feature_list: the feature list that gives slots and methods.
    batch_size: records per request (rows of the ExampleBatch).
    max_records: records (samples) in all: gen_prediction_log makes
      max_records // batch_size requests.
    signature_name: signatures the requests cycle over; serving_default is
      always included.
    variant_type: 'instance', 'example' or 'example_batch'.
    warmup_file: where gen_warmup_file writes.
    drop_rate: probability that a sparse feature is left empty.
    seed: seed of the random source; None draws a fresh one every run.
    req_time: line ids' req_time; None means SEEDED_REQ_TIME with a seed,
      else the current time.
  """
  model_name: str = "entry"
  fidv1_features: Optional[List[int]] = None
  fidv2_features: Optional[List[str]] = None
  sparse_features: Optional[List[str]] = None
  dense_features: Optional[List[str]] = None
  dense_feature_shapes: Optional[List[int]] = None
  dense_feature_types: Optional[List[Any]] = None
  extra_features: Optional[List[str]] = None
  extra_feature_shapes: Optional[List[int]] = None
  feature_list: Optional[FeatureList] = None
  batch_size: int = 64
  max_records: int = 1000
  signature_name: Optional[List[str]] = None
  variant_type: Optional[str] = None
  warmup_file: Optional[str] = None
  drop_rate: float = 0.5
  seed: Optional[int] = None
  req_time: Optional[int] = None

  def __post_init__(self):
    collected_fields = set()
    for name in ("model_name", "fidv1_features", "fidv2_features",
                 "sparse_features", "dense_features", "dense_feature_shapes",
                 "dense_feature_types", "extra_features",
                 "extra_feature_shapes", "feature_list", "variant_type"):
      value = getattr(self, name)
      if value is None or (isinstance(value, (str, list, tuple)) and
                           not value):
        collected = self.get(name)
        if collected is not None:
          setattr(self, name, collected)
          collected_fields.add(name)
    if self.feature_list is None:
      try:
        self.feature_list = FeatureList.parse()
      except ValueError as e:
        logging.debug("no feature list (%s); slots come from feature names", e)
    collected = self.get("signature_name") if not self.signature_name else None
    self.signature_name = warmup_io.signature_list(self.signature_name or
                                                   collected or [])
    self._check_types(collected_fields)

  def _check_types(self, collected_fields: Set[str]) -> None:
    """Takes the list fields as lists, and refuses values of the wrong
    kind, naming the field (and the graph collection it came from, for
    those in `collected_fields`): a string where a list belongs was read as
    its characters ("user_id" became the features u, s, e, ...)."""

    def field(name: str) -> str:
      return f"ParserArgs.{name}" + (
          f" (from the graph collection {name!r})"
          if name in collected_fields else "")

    element_types = {
        "fidv1_features": numbers.Integral,
        "fidv2_features": str,
        "sparse_features": str,
        "dense_features": str,
        "dense_feature_shapes": numbers.Integral,
        "dense_feature_types": object,
        "extra_features": str,
        "extra_feature_shapes": numbers.Integral,
    }
    for name, element_type in element_types.items():
      value = getattr(self, name)
      if value is not None:
        setattr(self, name, _checked_list(value, field(name), element_type))
    for name in ("batch_size", "max_records"):
      value = getattr(self, name)
      if not utils.is_integer(value):
        raise TypeError(f"{field(name)} must be an integer, got {value!r}")
      setattr(self, name, int(value))
    for name in ("seed", "req_time"):
      value = getattr(self, name)
      if value is not None and not utils.is_integer(value):
        raise TypeError(
            f"{field(name)} must be an integer or None, got {value!r}")
      if value is not None:
        # random.Random refuses numpy's integers.
        setattr(self, name, int(value))
    if (not isinstance(self.drop_rate, numbers.Real) or
        isinstance(self.drop_rate, bool)):
      raise TypeError(
          f"{field('drop_rate')} must be a number, got {self.drop_rate!r}")
    if not isinstance(self.model_name, str):
      raise TypeError(
          f"{field('model_name')} must be a str, got {self.model_name!r}")
    if self.feature_list is not None and not isinstance(
        self.feature_list, FeatureList):
      raise TypeError(
          f"{field('feature_list')} must be a FeatureList (e.g. "
          f"FeatureList.parse(path)), got {self.feature_list!r}")

  @classmethod
  def get(cls, name: str) -> Any:
    """The last value registered in the collection `name`, or None.

    For signature_name, every registered name.
    """
    collection = utils.get_collection(name)
    if collection is None:
      return None
    if name == "signature_name":
      return list(collection)
    return collection[-1]


def _rng_or_new(rng: Optional[random.Random]) -> random.Random:
  return rng if rng is not None else random.Random()


def _random_fids(slot: int, hash_bits: int, size: int,
                 rng: random.Random) -> List[int]:
  """`slot << hash_bits` plus a random non-zero hash, `size` times."""
  high = int(slot) << hash_bits  # a numpy slot's shift wrapped
  return [high | (rng.getrandbits(hash_bits) or 1) for _ in range(size)]


def gen_fids_v1(slot: int,
                size: int = 1,
                *,
                rng: Optional[random.Random] = None) -> List[int]:
  """`size` random v1 fids of `slot`; [] (with a warning) above slot 1023."""
  if not 0 < slot <= MAX_SLOT_V1:
    logging.log_first_n(logging.WARNING,
                        "fid v1 slots are 1..%d; skipping slot %d", 10,
                        MAX_SLOT_V1, slot)
    return []
  return _random_fids(slot, 54, size, _rng_or_new(rng))


def _check_slot_v2(slot: int) -> None:
  if not 0 < slot <= MAX_SLOT_V2:
    raise ValueError(f"fid v2 slots are 1..{MAX_SLOT_V2}, got {slot}")


def gen_fids_v2(slot: int,
                size: int = 1,
                *,
                rng: Optional[random.Random] = None) -> List[int]:
  """`size` random v2 fids of `slot` (1..32767)."""
  _check_slot_v2(slot)
  return _random_fids(slot, 48, size, _rng_or_new(rng))


# Samplers draw one record's values of one feature. They are built once per
# feature: deciding per value what to draw would cost more than drawing it.
_Sampler = Callable[[random.Random], list]


def _fid_sampler(meta: FeatureMeta, drop_rate: float) -> _Sampler:
  """The v2 fids of a sparse feature: list-like features get 0 to 2, others
  one; dropped with probability drop_rate, except slots 1 and 200."""
  try:
    _check_slot_v2(meta.slot)
  except ValueError as e:
    raise ValueError(f"sparse feature {meta.name!r}: {e}") from None
  slot = meta.slot
  method = getattr(meta.extra, "method", None)
  is_list = ("_recent" in meta.name or "_cp" in meta.name or
             "-" in meta.name or method in _LIST_METHODS)
  always = not is_list and slot in _ALWAYS_PRESENT_SLOTS

  def sample(rng: random.Random) -> List[int]:
    if not always and rng.random() < drop_rate:
      return []
    return _random_fids(slot, 48, int(rng.random() * 3) if is_list else 1,
                        rng)

  return sample


def _dense_sampler(meta: FeatureMeta) -> _Sampler:
  """`meta.shape` values: floats in [0, 1), integers in the upper half of
  the dtype's range, or 16 hex digits."""
  size, dtype = meta.shape, meta.dtype
  if dtype.is_floating:
    return lambda rng: [rng.random() for _ in range(size)]
  if dtype.is_integer:
    bits = dtype.size * 8 - 2  # below the sign bit, above half the range
    low = 1 << bits
    return lambda rng: [low | rng.getrandbits(bits) for _ in range(size)]
  if dtype == tf.string:
    return lambda rng: [b"%016x" % rng.getrandbits(64) for _ in range(size)]
  raise ValueError(f"dense feature {meta.name!r}: dtype {dtype.name} is not "
                   "supported (use float, double, int, int64 or string)")


_Filler = Callable[[Any, random.Random], None]


def _example_filler(meta: FeatureMeta, drop_rate: float) -> _Filler:
  """Fills a monolith.io.proto.Feature (of an Example or ExampleBatch)."""
  if meta.shape == -1:
    sample = _fid_sampler(meta, drop_rate)

    def fill_fids(feature: example_pb2.Feature, rng: random.Random) -> None:
      fids = sample(rng)
      if fids:  # a dropped feature stays unset
        feature.fid_v2_list.value.extend(fids)

    return fill_fids
  sample = _dense_sampler(meta)
  if meta.dtype == tf.float64:
    field = "double_list"
  elif meta.dtype.is_floating:
    field = "float_list"
  elif meta.dtype.is_integer:
    field = "int64_list"
  else:
    field = "bytes_list"
  return lambda feature, rng: getattr(feature, field).value.extend(sample(rng))


def _instance_filler(meta: FeatureMeta, drop_rate: float) -> _Filler:
  """Fills an idl.matrix.proto.Feature (of an Instance)."""
  if meta.shape == -1:
    sample, field = _fid_sampler(meta, drop_rate), "fid"
  else:
    sample = _dense_sampler(meta)
    if meta.dtype.is_floating:
      field = "float_value"
    elif meta.dtype.is_integer:
      field = "int64_value"
    else:
      field = "bytes_value"
  name = meta.name

  def fill(feature: feature_pb2.Feature, rng: random.Random) -> None:
    feature.name = name
    getattr(feature, field).extend(sample(rng))

  return fill


@functools.singledispatch
def fill_features(feature: Any,
                  meta: FeatureMeta,
                  drop_rate: float = 0,
                  *,
                  rng: Optional[random.Random] = None) -> None:
  """Fills an Example feature (monolith.io.proto.Feature) or an Instance
  feature (idl.matrix.proto.Feature) with random values for `meta`."""
  raise TypeError(f"fill_features: unsupported feature type "
                  f"{type(feature).__name__}")


@fill_features.register(example_pb2.Feature)
def _fill_example_feature(feature: example_pb2.Feature,
                          meta: FeatureMeta,
                          drop_rate: float = 0,
                          *,
                          rng: Optional[random.Random] = None) -> None:
  _example_filler(meta, drop_rate)(feature, _rng_or_new(rng))


@fill_features.register(feature_pb2.Feature)
def _fill_instance_feature(feature: feature_pb2.Feature,
                           meta: FeatureMeta,
                           drop_rate: float = 0,
                           *,
                           rng: Optional[random.Random] = None) -> None:
  _instance_filler(meta, drop_rate)(feature, _rng_or_new(rng))


def _check_line_id_field(name: str) -> None:
  if name not in FeatureMeta.line_id_fields:
    raise ValueError(
        f"extra feature {name!r} is not a LineId field; LineId fields: "
        f"{', '.join(sorted(FeatureMeta.line_id_fields))}")


def fill_line_id(line_id: line_id_pb2.LineId,
                 features: Optional[Sequence[FeatureMeta]] = None,
                 hash_len: int = 48,
                 actions: Optional[Sequence[int]] = None,
                 *,
                 rng: Optional[random.Random] = None,
                 req_time: Optional[int] = None) -> None:
  """Fills a LineId with random values.

  Args:
    line_id: the LineId to fill.
    features: LineId fields to fill (FeatureMeta.shape values for repeated
      fields); None fills uid, item_id, req_time, sample_rate and one action.
    hash_len: uid and item_id are `slot << hash_len | hash` (48 or 54).
    actions: actions to draw from (default 0..10).
    rng: the random source (default: a fresh one).
    req_time: req_time to write (default: the current time).

  Raises:
    ValueError: a feature that is not a LineId field.
  """
  rng = _rng_or_new(rng)
  req_time = int(time.time()) if req_time is None else req_time

  def action() -> int:
    return rng.choice(actions) if actions else rng.randint(0, 10)

  if not features:
    line_id.uid = (1 << hash_len) | rng.getrandbits(hash_len)
    line_id.item_id = (200 << hash_len) | rng.getrandbits(hash_len)
    line_id.req_time = req_time
    line_id.sample_rate = 1.0
    line_id.actions.append(action())
    return
  for meta in features:
    name, shape = meta.name, meta.shape
    if name == "uid":
      line_id.uid = (1 << hash_len) | rng.getrandbits(hash_len)
    elif name == "item_id":
      line_id.item_id = (200 << hash_len) | rng.getrandbits(hash_len)
    elif name == "req_time":
      line_id.req_time = req_time
      line_id.sample_rate = 1.0
    elif name == "actions":
      line_id.actions.extend(action() for _ in range(shape))
    else:
      _check_line_id_field(name)
      field = FeatureMeta.line_id_fields[name]
      if field.cpp_type in _FLOAT_CPP_TYPES:
        make = rng.random
      elif field.cpp_type in _INT_CPP_TYPES:
        make = functools.partial(rng.randint, 0, 10)
      elif field.cpp_type == _CppType.CPPTYPE_STRING:
        make = lambda: "hello world"
      else:
        make = lambda: False
      if field.is_repeated:
        getattr(line_id, name).extend(make() for _ in range(shape))
      else:
        setattr(line_id, name, make())


def lg_header(source: str) -> bytes:
  """The 8-byte lagrangex record header for records from `source`."""
  return dump_format.lagrangex_header(source or "")


def sort_header(sort_id: bool, kafka_dump: bool,
                kafka_dump_prefix: bool) -> bytes:
  """The record header of a dump with these flags and an empty sort id."""
  return dump_format.encode_header(
      dump_format.DumpLayout(kafka_dump_prefix=kafka_dump_prefix,
                             has_sort_id=sort_id,
                             kafka_dump=kafka_dump))


def _sparse_metas(names: Sequence[str],
                  feature_list: Optional[FeatureList]) -> List[FeatureMeta]:
  """Slots from the feature list (default: --feature_list), else from the
  names (slot_<N> etc.); other names get the smallest slots that no
  feature of `names` or of the feature list has, none registered
  (data.utils.register_slots) and neither always-present slot (user id 1,
  item id 200)."""
  if len(set(names)) != len(names):
    raise ValueError(f"sparse features repeat a name: {list(names)}")
  if feature_list is None:
    feature_list = default_feature_list()
  features = {}
  numbered = []  # names that take the next free slot
  for name in names:
    feature = feature_list.get(name) if feature_list is not None else None
    if feature is None:
      if data_utils.is_numbered_by_use(name):
        numbered.append(name)
        continue
      feature = Feature(feature_name=name,
                        slot=data_utils.get_slot_from_feature_name(name))
    if feature.slot is None:
      raise ValueError(f"sparse feature {name!r} has no slot: give it one in "
                       "the feature list or name it slot_<N>")
    if not 0 < feature.slot <= MAX_SLOT_V2:
      raise ValueError(f"sparse feature {name!r} has slot {feature.slot}; "
                       f"fid v2 slots are 1..{MAX_SLOT_V2}")
    features[name] = feature
  # Features may share a slot (a feature list allows it); numbered names
  # take slots no other feature has: one of the list's would give them its
  # fids, or always one of the user id's.
  taken = {feature.slot for feature in features.values()}
  taken |= {feature.slot for feature in feature_list or ()}
  taken |= set(data_utils.NAME_TO_SLOT.values()) | _ALWAYS_PRESENT_SLOTS
  free = (slot for slot in range(1, MAX_SLOT_V2 + 1) if slot not in taken)
  for name in numbered:
    features[name] = Feature(feature_name=name, slot=next(free))
  return [
      FeatureMeta(name, slot=features[name].slot, dtype=tf.int64,
                  extra=features[name]) for name in names
  ]


class _RandomRecords:
  """Makes random records of one configuration from one random source."""

  def __init__(self,
               sparse_metas: Sequence[FeatureMeta],
               dense_metas: Optional[Sequence[FeatureMeta]],
               extra_metas: Optional[Sequence[FeatureMeta]],
               drop_rate: float,
               actions: Optional[Sequence[int]],
               rng: Optional[random.Random],
               req_time: Optional[int],
               fidv1_slots: Optional[Sequence[int]] = None):
    if not 0 <= drop_rate <= 1:
      raise ValueError(f"drop_rate must be within [0, 1], got {drop_rate}")
    dense_metas = _checked_metas(dense_metas, "dense_features")
    extra_metas = _checked_metas(extra_metas, "extra_features")
    if fidv1_slots is not None:
      fidv1_slots = _checked_list(fidv1_slots, "fidv1_features",
                                  numbers.Integral)
    by_name = {}
    for meta in list(sparse_metas) + list(dense_metas or ()):
      if meta.name in by_name:
        raise ValueError(f"feature {meta.name!r} is listed twice (sparse and "
                         "dense features share one namespace)")
      by_name[meta.name] = meta
    label_meta = by_name.pop(_LABEL, None)
    # Labels per record: the `label` feature's shape; without one, a single
    # label (ExampleBatch rows then alternate 0, 1 so both classes occur).
    self.label_count = max(label_meta.shape, 1) if label_meta else None
    metas = list(by_name.values())
    # (NamedFeature / NamedFeatureList fields, filler) per feature.
    self.example_features = [
        (dict(name=m.name, id=m.slot) if m.slot else dict(name=m.name),
         _example_filler(m, drop_rate)) for m in metas
    ]
    self.instance_fillers = [_instance_filler(m, drop_rate) for m in metas]
    self.extra_metas = extra_metas
    self.actions = actions
    self.rng = _rng_or_new(rng)
    self.req_time = int(time.time()) if req_time is None else req_time
    if fidv1_slots is not None and len(set(fidv1_slots)) != len(fidv1_slots):
      raise ValueError(f"fidv1_features repeat a slot: {list(fidv1_slots)}")
    self.fidv1_slots = fidv1_slots or ()

  def _labels(self) -> List[int]:
    return [self.rng.getrandbits(1) for _ in range(self.label_count or 1)]

  def _fill_line_id(self, line_id: line_id_pb2.LineId) -> None:
    fill_line_id(line_id, self.extra_metas, actions=self.actions,
                 rng=self.rng, req_time=self.req_time)

  def example(self) -> example_pb2.Example:
    example = example_pb2.Example()
    for fields, fill in self.example_features:
      fill(example.named_feature.add(**fields).feature, self.rng)
    self._fill_line_id(example.line_id)
    example.label.extend(self._labels())
    return example

  def instance(self) -> proto_parser_pb2.Instance:
    instance = proto_parser_pb2.Instance()
    for slot in self.fidv1_slots:
      size = 1 if slot in _ALWAYS_PRESENT_SLOTS else self.rng.randint(0, 3)
      instance.fid.extend(gen_fids_v1(slot, size, rng=self.rng))
    for fill in self.instance_fillers:
      fill(instance.feature.add(), self.rng)
    self._fill_line_id(instance.line_id)
    instance.label.extend(self._labels())
    return instance

  def example_batch(self, batch_size: int) -> example_pb2.ExampleBatch:
    if batch_size <= 0:
      raise ValueError(f"batch_size must be positive, got {batch_size}")
    batch = example_pb2.ExampleBatch(batch_size=batch_size)
    for fields, fill in self.example_features:
      column = batch.named_feature_list.add(**fields)
      for _ in range(batch_size):
        fill(column.feature.add(), self.rng)
    line_ids = batch.named_feature_list.add(name="__LINE_ID__")
    for _ in range(batch_size):
      line_id = line_id_pb2.LineId()
      self._fill_line_id(line_id)
      line_ids.feature.add().bytes_list.value.append(
          line_id.SerializeToString())
    labels = batch.named_feature_list.add(name="__LABEL__")
    for row in range(batch_size):
      values = self._labels() if self.label_count else [row % 2]
      labels.feature.add().float_list.value.extend(values)
    return batch

  def serialized_batch(self, variant_type: str, batch_size: int) -> List[bytes]:
    """One request's records: batch_size records, or one ExampleBatch."""
    if variant_type == "example_batch":
      return [self.example_batch(batch_size).SerializeToString()]
    make = self.example if variant_type == "example" else self.instance
    return [make().SerializeToString() for _ in range(batch_size)]


def _checked_list(value: Any, what: str, element_type: type) -> list:
  """`value` as a list, refusing a value that is not one and items not of
  `element_type`, naming `what`: a string where a list belongs was read as
  its characters ("user_id" became the features u, s, e, ...)."""
  if isinstance(value, (str, bytes)) or not isinstance(
      value, collections.abc.Iterable):
    raise TypeError(
        f"{what} must be a list, got the {type(value).__name__} {value!r}" +
        (f" (a list of names: [{value!r}], or {value!r}.split(','))"
         if isinstance(value, str) else ""))
  value = list(value)
  kinds = {numbers.Integral: "integers", str: "str"}
  for item in value:
    if not isinstance(item, element_type) or isinstance(item, bool):
      raise TypeError(
          f"{what} holds {item!r} ({type(item).__name__}); its items are "
          f"{kinds.get(element_type, element_type.__name__)}")
  # Numpy's integers as Python's: a slot shifted into a fid wrapped in
  # int64 (slot 600 << 54).
  return [int(v) for v in value] if element_type is numbers.Integral else value


def _check_sparse_features(names: Optional[Sequence[str]]) -> List[str]:
  if not names:
    raise ValueError("sparse_features must name at least one feature")
  return _checked_list(names, "sparse_features", str)


def _checked_metas(metas: Optional[Sequence[FeatureMeta]],
                   what: str) -> Optional[List[FeatureMeta]]:
  return None if metas is None else _checked_list(metas, what, FeatureMeta)


def gen_example(sparse_features: List[str],
                dense_features: Optional[List[FeatureMeta]] = None,
                extra_features: Optional[List[FeatureMeta]] = None,
                feature_list: Optional[FeatureList] = None,
                drop_rate: float = 0,
                actions: Optional[List[int]] = None,
                *,
                rng: Optional[random.Random] = None,
                req_time: Optional[int] = None) -> example_pb2.Example:
  """A random Example: sparse and dense named features, line id, label."""
  metas = _sparse_metas(_check_sparse_features(sparse_features), feature_list)
  return _RandomRecords(metas, dense_features, extra_features, drop_rate,
                        actions, rng, req_time).example()


def gen_instance(fidv1_features: Optional[List[int]] = None,
                 fidv2_features: Optional[List[str]] = None,
                 dense_features: Optional[List[FeatureMeta]] = None,
                 extra_features: Optional[List[FeatureMeta]] = None,
                 feature_list: Optional[FeatureList] = None,
                 drop_rate: float = 0,
                 actions: Optional[List[int]] = None,
                 *,
                 rng: Optional[random.Random] = None,
                 req_time: Optional[int] = None) -> proto_parser_pb2.Instance:
  """A random Instance: v1 fids of `fidv1_features` slots in Instance.fid
  (0 to 3 per slot; one for slots 1 and 200), `fidv2_features` and dense
  features as Instance.feature, line id, label."""
  metas = _sparse_metas(
      _checked_list(fidv2_features or [], "fidv2_features", str),
      feature_list)
  return _RandomRecords(metas, dense_features, extra_features, drop_rate,
                        actions, rng, req_time, fidv1_features).instance()


def gen_example_batch(
    sparse_features: List[str],
    dense_features: Optional[List[FeatureMeta]] = None,
    extra_features: Optional[List[FeatureMeta]] = None,
    feature_list: Optional[FeatureList] = None,
    batch_size: int = 64,
    drop_rate: float = 0,
    actions: Optional[List[int]] = None,
    *,
    rng: Optional[random.Random] = None,
    req_time: Optional[int] = None) -> example_pb2.ExampleBatch:
  """A random ExampleBatch of `batch_size` rows: one named feature list per
  feature, plus `__LINE_ID__` (serialized LineIds) and `__LABEL__`."""
  metas = _sparse_metas(_check_sparse_features(sparse_features), feature_list)
  return _RandomRecords(metas, dense_features, extra_features, drop_rate,
                        actions, rng, req_time).example_batch(batch_size)


def _variant(variant_type: Optional[str]) -> str:
  variant = _VARIANT_ALIASES.get(variant_type, variant_type)
  if variant not in warmup_io.INPUT_NAMES:
    raise ValueError(f"variant_type must be one of "
                     f"{sorted(warmup_io.INPUT_NAMES)}, got {variant_type!r}")
  return variant


def _same_length(values: Optional[Sequence[Any]], names: Sequence[str],
                 field: str, names_field: str, default: Any) -> List[Any]:
  if not values:
    return [default] * len(names)
  if len(values) != len(names):
    raise ValueError(f"{field} has {len(values)} entries but {names_field} "
                     f"has {len(names)}: {list(values)} vs {list(names)}")
  return list(values)


def _check_shape(kind: str, name: str, shape: int) -> None:
  if shape < 1:
    raise ValueError(f"{kind} feature {name!r}: shape must be at least 1, "
                     f"got {shape}")


def _check_unused(args: ParserArgs, names_field: str, *fields: str) -> None:
  """Refuses shapes or types given for no feature: a forgotten name list."""
  for field in fields:
    if getattr(args, field):
      raise ValueError(f"{field} is given but {names_field} is not")


def _dense_metas(args: ParserArgs) -> Optional[List[FeatureMeta]]:
  names = args.dense_features
  if not names:
    _check_unused(args, "dense_features", "dense_feature_shapes",
                  "dense_feature_types")
    return None
  shapes = _same_length(args.dense_feature_shapes, names,
                        "dense_feature_shapes", "dense_features", 1)
  dtypes = _same_length(args.dense_feature_types, names, "dense_feature_types",
                        "dense_features", tf.float32)
  metas = []
  for name, shape, dtype in zip(names, shapes, dtypes):
    _check_shape("dense", name, shape)
    feature = args.feature_list.get(name) if args.feature_list else None
    metas.append(FeatureMeta(name, shape=shape, dtype=dtype, extra=feature))
  return metas


def _extra_metas(args: ParserArgs) -> Optional[List[FeatureMeta]]:
  names = args.extra_features
  if not names:
    _check_unused(args, "extra_features", "extra_feature_shapes")
    return None
  shapes = _same_length(args.extra_feature_shapes, names,
                        "extra_feature_shapes", "extra_features", 1)
  for name, shape in zip(names, shapes):
    _check_line_id_field(name)
    _check_shape("extra", name, shape)
    if shape != 1 and not FeatureMeta.line_id_fields[name].is_repeated:
      raise ValueError(
          f"extra feature {name!r} is a single LineId value: its shape must "
          f"be 1, got {shape} (shapes count the values of repeated fields)")
  return [FeatureMeta(name, shape=shape) for name, shape in zip(names, shapes)]


def _random_records(args: ParserArgs,
                    actions: Optional[Sequence[int]] = None) -> _RandomRecords:
  """The record maker for `args`, seeded with args.seed."""
  variant = _variant(args.variant_type)
  if variant == "instance":
    sparse = _sparse_metas(args.fidv2_features or [], args.feature_list)
    if not sparse and not args.fidv1_features:
      raise ValueError("the instance variant needs fidv1_features or "
                       "fidv2_features")
  else:
    sparse = _sparse_metas(_check_sparse_features(args.sparse_features),
                           args.feature_list)
  if args.req_time is not None:
    req_time = args.req_time
  elif args.seed is not None:
    req_time = SEEDED_REQ_TIME
  else:
    req_time = None
  fidv1 = args.fidv1_features if variant == "instance" else None
  return _RandomRecords(sparse, _dense_metas(args), _extra_metas(args),
                        args.drop_rate, actions, random.Random(args.seed),
                        req_time, fidv1)


def gen_prediction_log(
    args: ParserArgs) -> Iterator[prediction_log_pb2.PredictionLog]:
  """Yields max_records // batch_size random warmup requests.

  Each is a PredictRequest (model_spec.name = args.model_name) whose input
  `instances`, `examples` or `example_batch` holds batch_size serialized
  random records (one ExampleBatch of batch_size rows for example_batch),
  cycling over args.signature_name.

  While a model is being exported (`export_context`), as the original: the
  export's signatures of the default graph join the cycle, a signature
  without inputs gets requests without inputs, and after each request of
  serving_default with several output heads (or one not named "output") one
  request per head follows, with `output_filter` set to it.

  Raises:
    ValueError: bad arguments, or fewer requests than signatures.
    WarmupDataError: more requests than TF Serving's 1000; while exporting, a
      signature to warm up that the export lacks, or one whose inputs lack
      the variant's input (TF Serving would fail the model's warmup).
  """
  variant = _variant(args.variant_type)
  if args.batch_size <= 0:
    raise ValueError(f"batch_size must be positive, got {args.batch_size}")
  num_logs = args.max_records // args.batch_size
  signatures = warmup_io.signature_list(args.signature_name or [])
  if num_logs < len(signatures):
    raise ValueError(
        f"max_records={args.max_records} // batch_size={args.batch_size} "
        f"makes {num_logs} requests, fewer than the {len(signatures)} "
        f"signatures {signatures}; raise max_records")
  warmup_io.check_record_limit(
      num_logs, f"max_records={args.max_records} // "
      f"batch_size={args.batch_size}")
  records = _random_records(args)
  input_name = warmup_io.INPUT_NAMES[variant]
  exported = _exported_signatures(signatures, input_name, num_logs)
  heads = _output_heads(exported)
  if heads:
    with_heads = sum(1 for i in range(num_logs)
                     if signatures[i % len(signatures)] ==
                     warmup_io.DEFAULT_SIGNATURE)
    warmup_io.check_record_limit(
        num_logs + with_heads * len(heads),
        f"{num_logs} requests and one per output head ({len(heads)}) after "
        f"each of the {with_heads} {warmup_io.DEFAULT_SIGNATURE} ones")
  for i in range(num_logs):
    name = signatures[i % len(signatures)]
    inputs = {}
    if exported is None or exported[name].inputs:
      batch = records.serialized_batch(variant, args.batch_size)
      inputs = {input_name: warmup_io.string_tensor(batch)}
    log = warmup_io.predict_log(args.model_name, name, inputs)
    yield log
    if name == warmup_io.DEFAULT_SIGNATURE:
      for head in heads:
        head_log = prediction_log_pb2.PredictionLog()
        head_log.CopyFrom(log)
        head_log.predict_log.request.output_filter.append(head)
        yield head_log


# The output name of a single-output PredictOutput (TF's export_output).
_SINGLE_OUTPUT_NAME = "output"


def _output_heads(
    exported: Optional[Dict[str, export_context.SavedModelSignature]]
) -> List[str]:
  """The output heads of the exported serving_default that get a request
  each (several, or one not named "output"); [] when not exporting."""
  if exported is None:
    return []
  heads = list(exported[warmup_io.DEFAULT_SIGNATURE].outputs or {})
  if len(heads) > 1 or (heads and _SINGLE_OUTPUT_NAME not in heads):
    return heads
  return []


def _exported_signatures(
    signatures: List[str], input_name: str,
    num_logs: int) -> Optional[Dict[str, export_context.SavedModelSignature]]:
  """The signatures of the export being built (None when not exporting),
  by name; appends those not in `signatures` to it."""
  export_ctx = export_context.get_current_export_ctx()
  if export_ctx is None:
    return None
  exported = {
      s.name: s
      for s in export_ctx.signatures(tf.compat.v1.get_default_graph())
  }
  signatures.extend(name for name in exported if name not in signatures)
  missing = [name for name in signatures if name not in exported]
  if missing:
    raise warmup_io.WarmupDataError(
        f"warmup requests for the signatures {missing}, which the model being "
        f"exported lacks (it has {sorted(exported)}): TF Serving would fail "
        "its warmup")
  for name in signatures:
    inputs = exported[name].inputs
    # TF Serving's Predict needs exactly the signature's inputs.
    if inputs and set(inputs) != {input_name}:
      raise warmup_io.WarmupDataError(
          f"the exported signature {name!r} takes the inputs "
          f"{sorted(inputs)}, not only {input_name!r}: the requests carry "
          "only the variant's input (set variant_type to the model's input), "
          "and TF Serving fails a request missing a signature's input")
  if num_logs < len(signatures):
    logging.warning(
        "%d warmup requests for %d signatures %s: the last %d get none",
        num_logs, len(signatures), signatures, len(signatures) - num_logs)
  return exported


def gen_warmup_file(warmup_file: Optional[str] = None,
                    drop_rate: Optional[float] = None) -> Optional[str]:
  """Writes random warmup requests described by the graph's collections.

  Uses ParserArgs() defaults (the collections training registered), without
  a `label` dense feature. An existing file is kept.

  Returns:
    The warmup file, or None when no file or no features are known.
  """
  args = ParserArgs(warmup_file=warmup_file)
  if drop_rate is not None:
    args.drop_rate = drop_rate
  if not args.warmup_file:
    logging.info("warmup_file is None, skip")
    return None
  if tf.io.gfile.exists(args.warmup_file):
    logging.info("%s exists, return directly", args.warmup_file)
    return args.warmup_file
  if not (args.fidv1_features or args.fidv2_features or args.sparse_features or
          args.dense_features or args.extra_features):
    logging.warning("no features registered; not writing %s", args.warmup_file)
    return None
  if args.dense_features and _LABEL in args.dense_features:
    # Checked before the label's entries are dropped from all three.
    for field in ("dense_feature_shapes", "dense_feature_types"):
      _same_length(getattr(args, field), args.dense_features, field,
                   "dense_features", None)
    keep = [i for i, n in enumerate(args.dense_features) if n != _LABEL]
    for field in ("dense_features", "dense_feature_shapes",
                  "dense_feature_types"):
      values = getattr(args, field)
      if values:
        setattr(args, field, [values[i] for i in keep])
  count = warmup_io.write_prediction_logs(
      args.warmup_file, gen_prediction_log(args),
      too_large_remedy="lower batch_size")
  logging.info("wrote %d warmup records to %s", count, args.warmup_file)
  return args.warmup_file


def gen_random_data_file(data_file_name: str,
                         args: ParserArgs,
                         num_batch: int = 128,
                         source: Optional[str] = None,
                         sort_id: bool = True,
                         kafka_dump: bool = False,
                         kafka_dump_prefix: bool = False,
                         actions: Optional[List[int]] = None,
                         *,
                         layout: Optional[dump_format.DumpLayout] = None) -> int:
  """Writes a dump of random records that warmup_data_gen's PBReader reads.

  num_batch * batch_size records (num_batch ExampleBatches for
  example_batch), each behind a header: with sort_id, a sort id (empty) plus
  the kafka fields the flags ask for; without, a lagrangex header for
  `source`. `layout` instead picks any dump layout. The file is written to a
  temporary name and renamed.

  Returns:
    The number of records written.

  Raises:
    ValueError: num_batch or args.batch_size is not positive.
  """
  if num_batch <= 0 or args.batch_size <= 0:
    raise ValueError(f"num_batch ({num_batch}) and batch_size "
                     f"({args.batch_size}) must be > 0")
  if layout is None:
    layout = (dump_format.DumpLayout(kafka_dump_prefix=kafka_dump_prefix,
                                     has_sort_id=True,
                                     kafka_dump=kafka_dump)
              if sort_id else dump_format.DumpLayout(lagrangex_header=True))
  variant = _variant(args.variant_type)
  records = _random_records(args, actions)

  def payloads() -> Iterator[bytes]:
    for _ in range(num_batch):
      yield from records.serialized_batch(variant, args.batch_size)

  with warmup_io.atomic_output(data_file_name) as tmp_path:
    with tf.io.gfile.GFile(tmp_path, "wb") as stream:
      count = dump_format.write_dump(stream, payloads(), layout,
                                     source_name=source or "")
  return count
