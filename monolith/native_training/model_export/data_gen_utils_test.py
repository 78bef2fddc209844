"""Tests for data_gen_utils: record content, drop rate, seeds, dumps."""

import collections
import dataclasses
import itertools
import os
import random
import time

import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2

from idl.matrix.proto import example_pb2
from idl.matrix.proto import feature_pb2
from idl.matrix.proto import line_id_pb2
from monolith.native_training.data.feature_list import Feature
from monolith.native_training.data.feature_list import FeatureList
from monolith.native_training.model_export import data_gen_utils
from monolith.native_training.model_export import dump_format
from monolith.native_training.model_export import export_context
from monolith.native_training.model_export import sample_records
from monolith.native_training.model_export import warmup_data_gen
from monolith.native_training.model_export import warmup_io
from monolith.native_training.model_export.data_gen_utils import FeatureMeta
from monolith.native_training.model_export.data_gen_utils import ParserArgs

CONF = os.path.join(
    os.path.dirname(__file__), "..", "data", "testdata", "feature_list.conf")
RECORD_CLASSES = warmup_data_gen.RECORD_CLASSES
VARIANTS = tuple(RECORD_CLASSES)
# Feature-list slots: f_user_id 1, f_doc_id 200, f_doc_tags 218
# (VectorTopString), fc_user_recent_click_doc_id 402, f_user_id-f_doc_id 505.
SPARSE = ["user_id", "doc_id", "doc_tags", "user_recent_click_doc_id",
          "user_id-doc_id", "slot_77"]
SLOTS = {"user_id": 1, "doc_id": 200, "doc_tags": 218,
         "user_recent_click_doc_id": 402, "user_id-doc_id": 505, "slot_77": 77}
LIST_FEATURES = {"doc_tags", "user_recent_click_doc_id", "user_id-doc_id"}


@pytest.fixture(name="features")
def _features():
  return FeatureList.parse(CONF)


@pytest.fixture(autouse=True, name="graph")
def _empty_collections():
  # ParserArgs reads defaults from the default graph's collections.
  graph = tf.compat.v1.get_default_graph()
  for key in graph.get_all_collection_keys():
    graph.clear_collection(key)
  yield graph
  for key in graph.get_all_collection_keys():
    graph.clear_collection(key)


def _args(features, **kwargs):
  defaults = dict(sparse_features=SPARSE, fidv2_features=SPARSE,
                  feature_list=features, variant_type="example",
                  batch_size=4, max_records=8, seed=1, drop_rate=0.0)
  defaults.update(kwargs)
  return ParserArgs(**defaults)


def _records(log, variant):
  tensor = log.predict_log.request.inputs[warmup_io.INPUT_NAMES[variant]]
  return [RECORD_CLASSES[variant].FromString(r) for r in tensor.string_val]


def test_fid_layout_and_slot_limits():
  rng = random.Random(0)
  v1 = data_gen_utils.gen_fids_v1(5, 50, rng=rng)
  assert len(v1) == 50 and {f >> 54 for f in v1} == {5}
  assert all(0 < f & data_gen_utils.MASK_V1 for f in v1)
  assert {f >> 54 for f in data_gen_utils.gen_fids_v1(1023, 3, rng=rng)} == {
      1023}
  assert data_gen_utils.gen_fids_v1(1024, 3, rng=rng) == []
  assert data_gen_utils.gen_fids_v1(0, 3, rng=rng) == []
  # A numpy slot's shift wrapped in int64 (wrong slot bits, a negative fid).
  assert data_gen_utils.gen_fids_v1(
      np.int64(600), rng=random.Random(1)) == data_gen_utils.gen_fids_v1(
          600, rng=random.Random(1))
  v2 = data_gen_utils.gen_fids_v2(32767, 50, rng=rng)
  assert {f >> 48 for f in v2} == {32767} and all(f < 1 << 63 for f in v2)
  assert len(set(v2)) == 50  # 48 random bits
  # Slot 40000 set the reserved top bit, and read back as slot 7232.
  for slot in (0, 32768, 40000, 65535):
    with pytest.raises(ValueError, match="fid v2 slots are 1..32767"):
      data_gen_utils.gen_fids_v2(slot)


def test_sample_records_fids_name_their_slots():
  # Instance.fid carries v1 fids: the samples' v2-layout fids there read as
  # slot 0.
  rng = random.Random(3)
  instance = sample_records.make_instance(rng)
  assert instance.fid and {f >> 54 for f in instance.fid} <= {1, 2, 3, 7}
  example = sample_records.make_example(rng)
  assert example.named_feature
  # A feature may be empty; some are not.
  assert any(f.feature.fid_v2_list.value for f in example.named_feature)
  for feature in example.named_feature:
    fids = feature.feature.fid_v2_list.value
    assert all(f >> 48 == feature.id for f in fids)


def test_feature_meta_defaults():
  sparse = FeatureMeta("f", slot=3)
  assert (sparse.shape, sparse.dtype) == (-1, tf.int64)
  dense = FeatureMeta("ctr")
  assert (dense.shape, dense.dtype) == (1, tf.float32)
  # Line id names take the LineId field's type.
  assert FeatureMeta("uid").dtype == tf.int64
  assert FeatureMeta("actions").dtype == tf.int32
  assert FeatureMeta("device_type").dtype == tf.string
  assert FeatureMeta("x", shape=3, dtype="float64").dtype == tf.float64


def test_example_content(features):
  dense = [FeatureMeta("ctr", shape=4), FeatureMeta("emb", shape=3,
                                                    dtype=tf.float64),
           FeatureMeta("count", shape=2, dtype=tf.int64),
           FeatureMeta("tag", shape=1, dtype=tf.string),
           FeatureMeta("label", shape=2)]
  example = data_gen_utils.gen_example(SPARSE, dense, feature_list=features,
                                       rng=random.Random(3), req_time=1234)
  by_name = {nf.name: nf for nf in example.named_feature}
  assert list(by_name) == SPARSE + ["ctr", "emb", "count", "tag"]
  for name, slot in SLOTS.items():
    assert by_name[name].id == slot
    assert {f >> 48 for f in by_name[name].feature.fid_v2_list.value} <= {slot}
  for name in set(SPARSE) - LIST_FEATURES:  # drop_rate 0: one fid each
    assert len(by_name[name].feature.fid_v2_list.value) == 1
  assert len(by_name["ctr"].feature.float_list.value) == 4
  assert len(by_name["emb"].feature.double_list.value) == 3
  ints = by_name["count"].feature.int64_list.value
  assert len(ints) == 2 and all(2**62 - 1 <= v < 2**63 for v in ints)
  assert len(by_name["tag"].feature.bytes_list.value[0]) == 16
  assert all(0 <= v < 1 for v in by_name["ctr"].feature.float_list.value)
  assert by_name["ctr"].id == 0  # dense features have no slot
  assert len(example.label) == 2 and set(example.label) <= {0, 1}
  line_id = example.line_id
  assert line_id.uid >> 48 == 1 and line_id.item_id >> 48 == 200
  assert line_id.req_time == 1234 and line_id.sample_rate == 1.0
  assert len(line_id.actions) == 1 and 0 <= line_id.actions[0] <= 10


def test_drop_rate(features):
  rng = random.Random(5)
  metas = {name: FeatureMeta(name, slot=slot, extra=features.get(name))
           for name, slot in SLOTS.items()}

  def fid_counts(drop_rate, name, n=2000):
    counts = []
    for _ in range(n):
      feature = example_pb2.Feature()
      data_gen_utils.fill_features(feature, metas[name], drop_rate, rng=rng)
      counts.append(len(feature.fid_v2_list.value))
    return collections.Counter(counts)

  # The user and item id slots are never dropped.
  assert fid_counts(1.0, "user_id") == {1: 2000}
  assert fid_counts(1.0, "doc_id") == {1: 2000}
  assert fid_counts(1.0, "slot_77") == {0: 2000}
  assert fid_counts(0.0, "slot_77") == {1: 2000}
  half = fid_counts(0.5, "slot_77")
  assert 900 < half[0] < 1100 and half[0] + half[1] == 2000
  # List-like features (VectorTopString, _recent, combined) get 0..2 fids.
  for name in LIST_FEATURES:
    assert fid_counts(1.0, name) == {0: 2000}
    assert set(fid_counts(0.0, name)) == {0, 1, 2}


def test_fill_features_of_an_instance_feature():
  feature = feature_pb2.Feature()
  data_gen_utils.fill_features(feature, FeatureMeta("slot_9", slot=9),
                               rng=random.Random(0))
  assert feature.name == "slot_9" and [f >> 48 for f in feature.fid] == [9]
  dense = feature_pb2.Feature()
  data_gen_utils.fill_features(dense, FeatureMeta("d", shape=5),
                               rng=random.Random(0))
  assert dense.name == "d" and len(dense.float_value) == 5
  with pytest.raises(TypeError, match="unsupported feature type LineId"):
    data_gen_utils.fill_features(line_id_pb2.LineId(), FeatureMeta("d"))
  with pytest.raises(ValueError, match="sparse feature 'f': fid v2 slots are "
                     "1..32767, got 40000"):
    data_gen_utils.fill_features(feature_pb2.Feature(),
                                 FeatureMeta("f", slot=40000))


def test_instance_content(features):
  instance = data_gen_utils.gen_instance(
      fidv1_features=[1, 5, 200, 1024], fidv2_features=["doc_id", "slot_77"],
      dense_features=[FeatureMeta("ctr", shape=2)], feature_list=features,
      rng=random.Random(1))
  v1_slots = collections.Counter(f >> 54 for f in instance.fid)
  assert v1_slots[1] == 1 and v1_slots[200] == 1  # always exactly one
  assert v1_slots[5] <= 3 and set(v1_slots) <= {1, 5, 200}  # 1024 skipped
  names = [f.name for f in instance.feature]
  assert names == ["doc_id", "slot_77", "ctr"]
  assert [f >> 48 for f in instance.feature[0].fid] == [200]
  assert len(instance.feature[2].float_value) == 2
  assert instance.line_id.uid >> 48 == 1 and len(instance.label) == 1


def test_example_batch_content(features):
  batch = data_gen_utils.gen_example_batch(
      ["user_id", "slot_77"], [FeatureMeta("ctr", shape=2)],
      feature_list=features, batch_size=5, rng=random.Random(2))
  assert batch.batch_size == 5
  columns = {c.name: c for c in batch.named_feature_list}
  assert list(columns) == ["user_id", "slot_77", "ctr", "__LINE_ID__",
                           "__LABEL__"]
  assert columns["user_id"].id == 1 and columns["slot_77"].id == 77
  for column in columns.values():
    assert len(column.feature) == 5
  assert all(len(f.float_list.value) == 2 for f in columns["ctr"].feature)
  for feature in columns["__LINE_ID__"].feature:
    line_id = line_id_pb2.LineId.FromString(feature.bytes_list.value[0])
    assert line_id.uid >> 48 == 1 and line_id.item_id >> 48 == 200
  # Without a label feature the rows alternate 0 and 1.
  assert [list(f.float_list.value) for f in columns["__LABEL__"].feature] == [
      [0], [1], [0], [1], [0]]
  labelled = data_gen_utils.gen_example_batch(
      ["slot_1"], [FeatureMeta("label", shape=3)], batch_size=2)
  assert [len(f.float_list.value)
          for f in labelled.named_feature_list[-1].feature] == [3, 3]


def test_extra_features_fill_line_id_fields():
  extra = [FeatureMeta("uid"), FeatureMeta("req_time"),
           FeatureMeta("actions", shape=3), FeatureMeta("chnid"),
           FeatureMeta("device_type"), FeatureMeta("is_draw"),
           FeatureMeta("special_strategies", shape=2)]
  line_id = line_id_pb2.LineId()
  data_gen_utils.fill_line_id(line_id, extra, actions=[7, 8],
                              rng=random.Random(0), req_time=99)
  assert line_id.uid >> 48 == 1
  assert not line_id.HasField("item_id")  # only the listed fields
  assert line_id.req_time == 99 and line_id.sample_rate == 1.0
  assert len(line_id.actions) == 3 and set(line_id.actions) <= {7, 8}
  assert 0 <= line_id.chnid <= 10
  assert line_id.device_type == "hello world" and line_id.is_draw is False
  assert len(line_id.special_strategies) == 2
  v1 = line_id_pb2.LineId()
  data_gen_utils.fill_line_id(v1, hash_len=54, rng=random.Random(0))
  assert v1.uid >> 54 == 1 and v1.item_id >> 54 == 200
  assert abs(v1.req_time - time.time()) < 60
  with pytest.raises(ValueError, match="'page' is not a LineId field"):
    data_gen_utils.fill_line_id(line_id_pb2.LineId(), [FeatureMeta("page")])


@pytest.mark.parametrize("variant", VARIANTS)
def test_prediction_logs_cycle_signatures_with_batches(features, variant):
  args = _args(features, variant_type=variant, batch_size=3, max_records=15,
               signature_name=["a", "b"], model_name="ranker")
  logs = list(data_gen_utils.gen_prediction_log(args))
  assert len(logs) == 5  # max_records // batch_size
  requests = [log.predict_log.request for log in logs]
  assert [r.model_spec.signature_name for r in requests] == [
      "a", "b", "serving_default", "a", "b"]
  assert {r.model_spec.name for r in requests} == {"ranker"}
  for log in logs:
    records = _records(log, variant)
    if variant == "example_batch":
      assert len(records) == 1 and records[0].batch_size == 3
    else:
      assert len(records) == 3
    assert list(log.predict_log.request.inputs) == [
        warmup_io.INPUT_NAMES[variant]]


def test_parser_args_flags_shaped_input(features):
  args = _args(features, dense_features=["ctr", "emb", "label"],
               dense_feature_shapes=[4, 2, 2],
               dense_feature_types=[tf.float32, "double", tf.float32],
               extra_features=["uid", "actions"], extra_feature_shapes=[1, 2])
  example = _records(next(data_gen_utils.gen_prediction_log(args)),
                     "example")[0]
  by_name = {nf.name: nf.feature for nf in example.named_feature}
  assert len(by_name["ctr"].float_list.value) == 4
  assert len(by_name["emb"].double_list.value) == 2
  assert "label" not in by_name and len(example.label) == 2
  assert len(example.line_id.actions) == 2 and not example.line_id.item_id


def test_extra_feature_shapes_below_one_are_refused(features):
  args = _args(features, extra_features=["actions"], extra_feature_shapes=[0])
  with pytest.raises(ValueError, match="extra feature 'actions': shape must "
                     "be at least 1, got 0"):
    next(data_gen_utils.gen_prediction_log(args))
  # A single-value field holds one value, whatever the shape.
  args = _args(features, extra_features=["uid"], extra_feature_shapes=[5])
  with pytest.raises(ValueError, match="extra feature 'uid' is a single "
                     "LineId value: its shape must be 1, got 5"):
    next(data_gen_utils.gen_prediction_log(args))


def test_seed_makes_output_byte_identical(features):
  def run(**kwargs):
    args = _args(features, variant_type="example_batch", batch_size=4,
                 max_records=12, **kwargs)
    return [log.SerializeToString()
            for log in data_gen_utils.gen_prediction_log(args)]

  assert run(seed=11) == run(seed=11)
  # Numpy's integers as Python's (random.Random refused them).
  assert run(seed=np.int64(11)) == run(seed=11)
  assert run(seed=11) != run(seed=12)
  assert run(seed=None) != run(seed=None)
  # Seeded line ids carry a fixed req_time, not the clock's.
  log = prediction_log_pb2.PredictionLog.FromString(run(seed=11)[0])
  batch = _records(log, "example_batch")[0]
  line_id = line_id_pb2.LineId.FromString(
      batch.named_feature_list[-2].feature[0].bytes_list.value[0])
  assert line_id.req_time == data_gen_utils.SEEDED_REQ_TIME


@pytest.mark.parametrize("kwargs,error", [
    (dict(max_records=8, batch_size=8, signature_name=["a"]),
     r"max_records=8 // batch_size=8 makes 1 requests, fewer than the 2"),
    (dict(max_records=1001, batch_size=1),
     "TF Serving fails to load a model whose warmup file has more than 1000"),
    (dict(variant_type="row"), "variant_type must be one of"),
    (dict(batch_size=0), "batch_size must be positive"),
    (dict(dense_features=["a", "b"], dense_feature_shapes=[1]),
     "dense_feature_shapes has 1 entries but dense_features has 2"),
    (dict(dense_features=["a"], dense_feature_shapes=[0]),
     "dense feature 'a': shape must be at least 1"),
    (dict(sparse_features=["slot_1", "slot_1"]), "repeat a name"),
    (dict(dense_features=["ctr", "ctr"], dense_feature_shapes=[4, 8]),
     "feature 'ctr' is listed twice"),
    (dict(dense_features=[SPARSE[0]]),
     f"feature '{SPARSE[0]}' is listed twice"),
    (dict(sparse_features=[]), "sparse_features must name at least one"),
    (dict(sparse_features=["slot_x"], feature_list=None), "has no slot"),
    (dict(sparse_features=["slot_70000"], feature_list=None),
     "sparse feature 'slot_70000' has slot 70000; fid v2 slots are 1..32767"),
    (dict(variant_type="instance", fidv2_features=[]),
     "the instance variant needs fidv1_features or fidv2_features"),
    (dict(extra_features=["page"]), "'page' is not a LineId field"),
    (dict(drop_rate=1.5), r"drop_rate must be within \[0, 1\]"),
    (dict(dense_features=["b"], dense_feature_types=[tf.bool]),
     "dtype bool is not supported"),
])
def test_bad_arguments_are_clear_errors(features, kwargs, error):
  args = _args(features, **kwargs)
  with pytest.raises((ValueError, warmup_io.WarmupDataError), match=error):
    list(data_gen_utils.gen_prediction_log(args))


def test_an_exported_signature_with_more_inputs_is_refused(features, graph):
  # The requests carry only the variant's input: TF Serving's Predict would
  # fail them for the missing one.
  with export_context.enter_export_mode(
      export_context.ExportMode.STANDALONE) as ctx:
    ctx.add_signature(graph, "serving_default", {
        "examples": None,
        "extra": None
    }, {"output": None})
    with pytest.raises(warmup_io.WarmupDataError,
                       match=r"takes the inputs \['examples', 'extra'\], "
                       "not only 'examples'"):
      list(data_gen_utils.gen_prediction_log(_args(features)))


def test_random_data_file_needs_records(tmp_path, features):
  for num_batch, batch_size in ((0, 2), (2, 0)):
    with pytest.raises(ValueError, match=r"num_batch \(\d+\) and batch_size "
                       r"\(\d+\) must be > 0"):
      data_gen_utils.gen_random_data_file(
          str(tmp_path / "dump"), _args(features, batch_size=batch_size),
          num_batch=num_batch)
  assert not os.listdir(tmp_path)


def test_an_export_in_progress_adds_its_signatures_and_output_heads(
    features, graph):
  # As the original: the export's signatures join the cycle, one without
  # inputs gets requests without inputs, and each serving_default request
  # is followed by one per output head.
  with export_context.enter_export_mode(
      export_context.ExportMode.STANDALONE) as ctx:
    ctx.add_signature(graph, "serving_default", {"examples": None},
                      {"ctr": None, "cvr": None})
    ctx.add_signature(graph, "stats", {}, {"count": None})
    logs = list(data_gen_utils.gen_prediction_log(
        _args(features, max_records=16)))
    requests = [log.predict_log.request for log in logs]
    assert [(r.model_spec.signature_name, list(r.output_filter),
             list(r.inputs)) for r in requests] == [
                 ("serving_default", [], ["examples"]),
                 ("serving_default", ["ctr"], ["examples"]),
                 ("serving_default", ["cvr"], ["examples"]),
                 ("stats", [], []),
             ] * 2
    assert requests[1].inputs["examples"] == requests[0].inputs["examples"]
    # The per-head requests count toward TF Serving's 1000: 600 requests,
    # 300 of serving_default, each followed by 2 more.
    with pytest.raises(warmup_io.WarmupDataError,
                       match="one per output head .* would make 1200 warmup "
                       "records"):
      next(data_gen_utils.gen_prediction_log(
          _args(features, max_records=600, batch_size=1)))
    # A signature the export lacks, or one without the variant's input,
    # would fail TF Serving's warmup.
    with pytest.raises(warmup_io.WarmupDataError,
                       match=r"signatures \['extra'\], which the model"):
      list(data_gen_utils.gen_prediction_log(
          _args(features, signature_name=["extra"])))
    with pytest.raises(warmup_io.WarmupDataError,
                       match="takes the inputs \\['examples'\\], not only "
                       "'instances'"):
      list(data_gen_utils.gen_prediction_log(
          _args(features, variant_type="instance")))
  # A single head named "output" gets no per-head requests (a new export:
  # the signatures registered by the last one are forgotten).
  graph.clear_collection("signature_name")
  with export_context.enter_export_mode(
      export_context.ExportMode.STANDALONE) as ctx:
    ctx.add_signature(graph, "serving_default", {"examples": None},
                      {"output": None})
    logs = list(data_gen_utils.gen_prediction_log(_args(features)))
    assert [list(l.predict_log.request.output_filter) for l in logs] == [[]] * 2


def test_names_without_a_slot_take_free_slots():
  metas = data_gen_utils._sparse_metas(
      ["user_recent_click", "slot_1", "doc_tags", "slot_3"], None)
  assert [(m.name, m.slot) for m in metas] == [
      ("user_recent_click", 2), ("slot_1", 1), ("doc_tags", 4), ("slot_3", 3)]


def test_names_without_a_slot_take_slots_no_listed_feature_has(features):
  # "foo" took slot 1, f_user_id's in the list, for fids of the user id's
  # slot, present in every record.
  metas = data_gen_utils._sparse_metas(["foo", "doc_id"], features)
  taken = {f.slot for f in features} | {1, 200}
  assert metas[1].slot == 200 and metas[0].slot not in taken
  assert metas[0].slot == min(set(range(1, 1000)) - taken)


def test_headers_build_on_dump_format():
  assert data_gen_utils.lg_header("hello") == dump_format.lagrangex_header(
      "hello")
  assert data_gen_utils.lg_header(None) == bytes(8)
  zeros = lambda n: bytes(8 * n)
  assert data_gen_utils.sort_header(True, False, False) == zeros(1)
  assert data_gen_utils.sort_header(True, True, False) == zeros(2)
  assert data_gen_utils.sort_header(True, False, True) == zeros(3)
  assert data_gen_utils.sort_header(True, True, True) == zeros(4)
  assert data_gen_utils.sort_header(False, False, False) == b""


LAYOUTS = [dump_format.DumpLayout(lagrangex_header=True)] + [
    dump_format.DumpLayout(kafka_dump_prefix=p, has_sort_id=s, kafka_dump=k)
    for p, s, k in itertools.product((False, True), repeat=3)
]


def _layout_id(layout):
  return "+".join(k for k, v in vars(layout).items() if v) or "bare"


def _read_dump(path, layout, variant, batch_size):
  logs = warmup_data_gen.gen_prediction_log_from_file(
      path, batch_size, variant_type=variant, **dataclasses.asdict(layout))
  return [r for log in logs for r in _records(log, variant)]


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("layout", LAYOUTS, ids=_layout_id)
def test_random_dump_round_trips_through_file_mode(tmp_path, features, layout,
                                                   variant):
  args = _args(features, variant_type=variant, batch_size=3, seed=4)
  path = str(tmp_path / "dump")
  count = data_gen_utils.gen_random_data_file(path, args, num_batch=2,
                                              source="topic", layout=layout)
  per_batch = 1 if variant == "example_batch" else 3
  assert count == 2 * per_batch
  records = _read_dump(path, layout, variant, batch_size=3)
  # The same seed gives the same records in every layout.
  bare = str(tmp_path / "bare")
  data_gen_utils.gen_random_data_file(bare, args, num_batch=2,
                                      layout=dump_format.DumpLayout())
  assert records == _read_dump(bare, dump_format.DumpLayout(), variant, 3)
  assert len(records) == count
  if variant == "instance":
    assert [f.name for f in records[0].feature] == SPARSE
  elif variant == "example":
    assert [nf.id for nf in records[0].named_feature] == list(SLOTS.values())
  else:
    assert records[0].batch_size == 3
  assert sorted(os.listdir(tmp_path)) == ["bare", "dump"]  # no temp files


def test_random_dump_with_the_original_header_flags(tmp_path, features):
  args = _args(features, variant_type="instance", batch_size=2)
  kafka = str(tmp_path / "kafka")
  data_gen_utils.gen_random_data_file(kafka, args, num_batch=3, sort_id=True,
                                      kafka_dump=True)
  layout = dump_format.DumpLayout(has_sort_id=True, kafka_dump=True)
  assert len(_read_dump(kafka, layout, "instance", 2)) == 6
  lagrangex = str(tmp_path / "lagrangex")
  data_gen_utils.gen_random_data_file(lagrangex, args, num_batch=1,
                                      source="topic_a", sort_id=False,
                                      actions=[3])
  with open(lagrangex, "rb") as f:
    assert f.read(8) == dump_format.lagrangex_header("topic_a")
  records = _read_dump(lagrangex, dump_format.DumpLayout(lagrangex_header=True),
                       "instance", 2)
  assert [list(r.line_id.actions) for r in records] == [[3], [3]]


def test_parser_args_defaults_come_from_graph_collections(graph):
  del graph
  # A FeatureList registers itself when created.
  registered = FeatureList(None, {}, {}, {"f_a": Feature("f_a", slot=3)})
  tf.compat.v1.add_to_collection("sparse_features", ["slot_1", "slot_2"])
  tf.compat.v1.add_to_collection("variant_type", "example")
  tf.compat.v1.add_to_collection("signature_name", "ctr")
  tf.compat.v1.add_to_collection("signature_name", "cvr")
  args = ParserArgs()
  assert args.sparse_features == ["slot_1", "slot_2"]
  assert args.variant_type == "example"
  assert args.signature_name == ["ctr", "cvr", "serving_default"]
  assert args.feature_list is registered
  assert (args.model_name, args.batch_size, args.max_records,
          args.drop_rate) == ("entry", 64, 1000, 0.5)
  explicit = ParserArgs(sparse_features=["slot_3"], signature_name=["x"])
  assert explicit.sparse_features == ["slot_3"]
  assert explicit.signature_name == ["x", "serving_default"]


def test_gen_warmup_file_from_collections(tmp_path, graph):
  del graph
  path = str(tmp_path / "assets.extra" / "tf_serving_warmup_requests")
  assert data_gen_utils.gen_warmup_file(None) is None
  assert data_gen_utils.gen_warmup_file(path) is None  # no features known
  for name, value in [("sparse_features", ["slot_1", "slot_5"]),
                      ("dense_features", ["label", "ctr"]),
                      ("dense_feature_shapes", [1, 3]),
                      ("dense_feature_types", [tf.float32, tf.float32]),
                      ("variant_type", "example")]:
    tf.compat.v1.add_to_collection(name, value)
  assert data_gen_utils.gen_warmup_file(path, drop_rate=0) == path
  logs = [
      prediction_log_pb2.PredictionLog.FromString(r.numpy())
      for r in tf.data.TFRecordDataset(path)
  ]
  assert len(logs) == 1000 // 64
  example = _records(logs[0], "example")[0]
  # The label is dropped, the other dense features are kept.
  assert [nf.name for nf in example.named_feature] == ["slot_1", "slot_5",
                                                       "ctr"]
  assert all(len(nf.feature.fid_v2_list.value) == 1
             for nf in example.named_feature[:2])  # drop_rate=0
  before = os.stat(path).st_mtime_ns
  assert data_gen_utils.gen_warmup_file(path) == path  # kept as is
  assert os.stat(path).st_mtime_ns == before


def test_gen_warmup_file_names_mismatched_dense_lists(tmp_path, graph):
  # The label's entries are dropped from the three lists: their lengths are
  # checked first (an IndexError before).
  del graph
  path = str(tmp_path / "warmup")
  for name, value in [("dense_features", ["label", "ctr"]),
                      ("dense_feature_shapes", [1])]:
    tf.compat.v1.add_to_collection(name, value)
  with pytest.raises(ValueError, match="dense_feature_shapes has 1 entries "
                     "but dense_features has 2"):
    data_gen_utils.gen_warmup_file(path)
  assert not os.path.exists(path)


@pytest.mark.parametrize("kwargs, error", [
    # A string was read as its characters: features u, s, e, r, _, i, d.
    (dict(sparse_features="user_id"),
     r"ParserArgs.sparse_features must be a list, got the str 'user_id' "
     r"\(a list of names: \['user_id'\], or 'user_id'.split\(','\)\)"),
    (dict(dense_features="age"), "ParserArgs.dense_features must be a list"),
    (dict(fidv2_features=b"uid"), "ParserArgs.fidv2_features must be a list"),
    (dict(extra_features=["uid", 3]),
     r"ParserArgs.extra_features holds 3 \(int\); its items are str"),
    (dict(fidv1_features=["1"]),
     r"ParserArgs.fidv1_features holds '1' \(str\); its items are integers"),
    (dict(dense_features=["a"], dense_feature_shapes=[2.5]),
     "ParserArgs.dense_feature_shapes holds 2.5"),
    (dict(batch_size=2.0), "ParserArgs.batch_size must be an integer"),
    (dict(max_records="10"), "ParserArgs.max_records must be an integer"),
    (dict(req_time=1.5), "ParserArgs.req_time must be an integer or None"),
    (dict(drop_rate=None), "ParserArgs.drop_rate must be a number"),
    (dict(model_name=None), "ParserArgs.model_name must be a str"),
    (dict(feature_list="/path/to/feature_list.conf"),
     r"ParserArgs.feature_list must be a FeatureList \(e.g. "
     r"FeatureList.parse\(path\)\)"),
])
def test_parser_args_of_the_wrong_kind_are_refused(graph, kwargs, error):
  del graph
  with pytest.raises(TypeError, match=error):
    data_gen_utils.ParserArgs(variant_type="example", **kwargs)


@pytest.mark.parametrize("generate, error", [
    (lambda: data_gen_utils.gen_example("user_id"),
     r"sparse_features must be a list, got the str 'user_id'"),
    (lambda: data_gen_utils.gen_example_batch("user_id"),
     r"sparse_features must be a list, got the str 'user_id'"),
    (lambda: data_gen_utils.gen_instance(fidv2_features="uid"),
     r"fidv2_features must be a list, got the str 'uid'"),
    (lambda: data_gen_utils.gen_instance(fidv1_features=["1"]),
     r"fidv1_features holds '1' \(str\); its items are integers"),
    (lambda: data_gen_utils.gen_example(
        ["a"], dense_features=data_gen_utils.FeatureMeta("age", shape=1)),
     r"dense_features must be a list, got the FeatureMeta"),
    (lambda: data_gen_utils.gen_example(["a"], extra_features=["uid"]),
     r"extra_features holds 'uid' \(str\); its items are FeatureMeta"),
])
def test_generators_refuse_lists_of_the_wrong_kind(generate, error):
  """As ParserArgs does: "user_id" was read as the features u, s, e, ..."""
  with pytest.raises(TypeError, match=error):
    generate()


def test_parser_args_take_numpy_integers_and_other_collections(graph):
  del graph
  args = data_gen_utils.ParserArgs(variant_type="instance",
                                   fidv1_features=range(1, 3),
                                   fidv2_features={"a": 1}.keys(),
                                   batch_size=np.int64(4), seed=np.int32(1))
  assert args.batch_size == 4
  assert args.fidv1_features == [1, 2]
  assert args.fidv2_features == ["a"]


def test_parser_args_name_the_collection_a_bad_value_came_from(graph):
  del graph
  tf.compat.v1.add_to_collection("sparse_features", "user_id")
  with pytest.raises(TypeError, match="ParserArgs.sparse_features \\(from the "
                     "graph collection 'sparse_features'\\) must be a list"):
    data_gen_utils.ParserArgs(variant_type="example")
