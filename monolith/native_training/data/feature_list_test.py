"""Tests for feature_list: the config format, lookups and slot conventions."""

import logging
import os

import numpy as np
import pytest
import tensorflow as tf

from monolith.native_training.data import feature_list
from monolith.native_training.data import utils as data_utils
from monolith.native_training.data.feature_list import Feature
from monolith.native_training.data.feature_list import FeatureList

CONF = os.path.join(os.path.dirname(__file__), "testdata", "feature_list.conf")


@pytest.fixture(name="features")
def _features():
  return FeatureList.parse(CONF)


def test_parse_reads_every_entry_kind(features):
  assert features.column_name == {
      "user_id", "doc_id", "doc_tags", "user_recent_click_doc_id", "page"
  }
  assert features.feeds["user_id"] == feature_list.Feed(
      feed_name="user_id", shared=True, feature_id=368236)
  assert features.feeds["doc_id"].shared is False
  assert features.caches["cache_column"].cache_column == "user_id"
  cache = features.caches["user_cache"]
  assert (cache.capacity, cache.timeout, cache.cache_type) == (1000, 60, "lru")
  assert len(features) == 6
  assert [f.feature_name for f in features] == [
      "f_user_id", "f_doc_id", "f_doc_tags", "fc_user_recent_click_doc_id",
      "f_page", "f_user_id-f_doc_id"
  ]


def test_feature_fields_are_converted(features):
  combined = features["f_user_id-f_doc_id"]
  assert combined.slot == 505 and combined.method == "Combine"
  assert combined.depend == ["user_id", "doc_id"]  # quotes and spaces dropped
  assert combined.input_optional == [True, False]
  assert combined.cache_keys == ["user_id"]
  page = features["f_page"]
  assert page.shared is True and page.need_raw is True
  assert page.feature_group == ["user", "context"]
  assert features["f_doc_tags"].args == ["10"]
  recent = features["fc_user_recent_click_doc_id"]
  assert recent.feature_version == 2 and recent.feature_id is None
  assert features["f_doc_id"].feature_id == 368764


def test_lookup_by_name_with_or_without_prefix_and_by_slot(features):
  assert features["doc_id"] is features["f_doc_id"]
  assert features["user_recent_click_doc_id"].slot == 402  # fc_ prefix
  assert features["user_id-doc_id"].slot == 505  # per-term prefixes
  assert features[200].feature_name == "f_doc_id"
  assert features.get("nope") is None and features.get(999, "x") == "x"
  assert "doc_id" in features and 218 in features and "user_id-doc_id" in features
  assert "nope" not in features and 999 not in features
  assert [f.feature_name for f in features.get_with_slot(1)] == ["f_user_id"]
  assert features.get_with_slot(12345) == []
  with pytest.raises(KeyError, match="there is no feature nope"):
    features["nope"]  # pylint: disable=pointless-statement
  # numpy ints are slots; other keys are no feature (get and in answer).
  assert features[np.int64(200)].feature_name == "f_doc_id"
  assert np.int32(218) in features
  assert features.get(None) is None and None not in features
  assert features.get(2.5, "x") == "x"


def test_a_combined_name_of_mixed_prefixes_is_found_by_its_bare_name(
    tmp_path):
  path = tmp_path / "mixed.conf"
  path.write_text("feature_name=fc_a-f_b; slot=7\n")
  assert FeatureList.parse(str(path))["a-b"].slot == 7


def test_feature_name_strips_prefixes_per_term():
  feature = Feature(feature_name="fc_User-f_Doc", depend="fc_a, f_b-fc_c")
  assert feature.name == "user-doc"
  assert feature.depend_strip_prefix == ["a", "b-c"]


def test_str_is_a_config_line_that_parses_back(features, tmp_path):
  path = tmp_path / "round_trip.conf"
  path.write_text("\n".join(str(f).replace(";", "; ") for f in features) + "\n")
  again = FeatureList.parse(str(path))
  assert list(again) == list(features)
  assert str(features["f_page"]) == (
      "feature_name=f_page;depend=page;method=DirectInt32;slot=306;"
      "shared=true;need_raw=true;feature_group=user,context")


def test_parse_is_cached_per_file_and_naming(features):
  assert FeatureList.parse(CONF) is features
  stripped = FeatureList.parse(CONF, use_old_name=False)
  assert stripped is not features
  assert set(stripped.features) == {
      "user_id", "doc_id", "doc_tags", "user_recent_click_doc_id", "page",
      "user_id-doc_id"
  }


def test_feature_list_registers_in_the_graph_collection():
  with tf.Graph().as_default():
    created = FeatureList(None, {}, {}, {"f_a": Feature("f_a", slot=3)})
    assert tf.compat.v1.get_collection("feature_list") == [created]
    FeatureList(None, {}, {}, {})  # empty values are not registered
    assert tf.compat.v1.get_collection("feature_list") == [created]


def test_a_parsed_list_registers_in_every_graph_that_parses_it():
  # The parse is cached per process; each graph still finds the list in its
  # own collection (an export's graph after a training graph), once.
  for _ in range(2):
    with tf.Graph().as_default():
      parsed = FeatureList.parse(CONF)
      assert FeatureList.parse(CONF) is parsed
      assert tf.compat.v1.get_collection("feature_list") == [parsed]


@pytest.mark.parametrize("line,error", [
    ("feature_name=f_x; slot=abc", r"bad.conf:2: invalid literal for int"),
    # Lines the original failed on too (without use_old_name, below, it
    # also failed on lines without a feature_name).
    ("cache_name: user_cache", r"bad.conf:2: expected key=value pairs"),
    # A key glued to the value before it was read as part of that value.
    ("feature_name=f_a; depend=a,b,slot=3; method=Direct",
     r"bad.conf:2: the value of depend holds '=' \('a,b,slot=3'\)"),
    ("feature_name=f_a; depend=a,b==3", r"bad.conf:2: the value of depend"),
])
def test_malformed_lines_name_file_and_line(tmp_path, line, error):
  path = tmp_path / "bad.conf"
  path.write_text(f"# header\n{line}\n")
  with pytest.raises(ValueError, match=error):
    FeatureList.parse(str(path))


def test_lines_the_original_read_as_no_feature_are_skipped_with_a_warning(
    tmp_path, caplog):
  # The original filed them under a feature named None; a config that
  # loads there loads here (a byte-order mark too; "=" or ":" after the
  # column names, as the original took both).
  path = tmp_path / "compat.conf"
  path.write_text("\ufeff[features]\n"
                  "column_name=a, b\n"
                  "cache_column=uid\n"
                  "slot=3; method=Direct\n"
                  "feature_name=f_a; slot=5\n", encoding="utf-8")
  with caplog.at_level(logging.WARNING):
    parsed = FeatureList.parse(str(path))
  assert list(parsed.features) == ["f_a"]
  assert parsed.column_name == {"a", "b"}
  assert parsed.caches["cache_column"].cache_column == "uid"
  assert "compat.conf:1: no key=value pairs, line skipped: [features]" in (
      caplog.text)
  assert ("compat.conf:4: a feature without a feature_name, skipped: "
          "slot=3; method=Direct") in caplog.text
  # Keyed by the new names, the original failed on those lines.
  with pytest.raises(ValueError, match="compat.conf:1: expected key=value"):
    FeatureList.parse(str(path), use_old_name=False)
  path.write_text("slot=3; method=Direct\n")
  with pytest.raises(ValueError, match="compat.conf:1: a feature needs a "
                     "feature_name"):
    FeatureList.parse(str(path), use_old_name=False)


def test_keys_a_feature_does_not_know_are_ignored_whatever_their_spelling(
    tmp_path):
  # Keys are words, not only identifiers (the original's were): an unknown
  # one was read as part of the value before it.
  path = tmp_path / "keys.conf"
  path.write_text("feature_name=f_a; depend=a; slot=1; method=DirectString; "
                  "my-key=3; 2nd_slot=7\n")
  feature = FeatureList.parse(str(path))["f_a"]
  assert (feature.method, feature.slot, feature.depend) == (
      "DirectString", 1, ["a"])


def test_a_directory_is_not_a_feature_list(tmp_path):
  # Read as a file it gave no lines: a feature list of no features.
  with pytest.raises(ValueError, match=f"{tmp_path} is a directory, not a "
                     "feature list config file"):
    feature_list.FeatureList.parse(str(tmp_path))


def test_parse_without_file_or_flag_is_an_error():
  with pytest.raises(ValueError, match="no feature list"):
    FeatureList.parse()


def test_get_feature_name_and_slot_without_a_feature_list():
  assert feature_list.get_feature_name_and_slot(7) == ("slot_7", 7)
  # Numpy's integers are slots; a bool is none (it was "slot_True").
  assert feature_list.get_feature_name_and_slot(np.int64(7)) == ("slot_7", 7)
  with pytest.raises(TypeError, match="got bool"):
    feature_list.get_feature_name_and_slot(True)

  assert feature_list.get_feature_name_and_slot("fc_slot_12") == (
      "fc_slot_12", 12)
  assert feature_list.get_feature_name_and_slot("slot_x") == ("slot_x", None)
  assert feature_list.get_feature_name_and_slot("slot_\u00b2") == (
      "slot_\u00b2", None)
  data_utils.register_slots({"registered_ctr": 41})
  assert feature_list.get_feature_name_and_slot("registered_ctr") == (
      "registered_ctr", 41)
  # Other names get the next free number, stable for the process.
  first = feature_list.get_feature_name_and_slot("some_feature")[1]
  second = feature_list.get_feature_name_and_slot("other_feature")[1]
  assert second == first + 1
  assert feature_list.get_feature_name_and_slot("some_feature")[1] == first
  # The original's tests start the numbering again this way.
  data_utils.USED_FREATUE_NAMES.clear()
  assert feature_list.get_feature_name_and_slot("other_feature")[1] == 1

  class Column:
    feature_name, feature_slot = "col", 9

  assert feature_list.get_feature_name_and_slot(Column()) == ("col", 9)
  with pytest.raises(TypeError, match="expected a slot"):
    feature_list.get_feature_name_and_slot(1.5)


def test_register_slots_from_a_list_uses_slot_names():
  data_utils.register_slots([301, 302])
  assert data_utils.NAME_TO_SLOT["slot_301"] == 301
  with pytest.raises(TypeError, match="slots must be ints"):
    data_utils.register_slots(["a"])
  # Numpy's integers as Python's; a bool is no slot (it was "slot_True").
  data_utils.register_slots([np.int32(43)])
  data_utils.register_slots({"numpy_ctr": np.int64(44)})
  assert data_utils.NAME_TO_SLOT["slot_43"] == 43
  assert type(data_utils.NAME_TO_SLOT["slot_43"]) is int
  assert type(data_utils.NAME_TO_SLOT["numpy_ctr"]) is int
  for slots in ([True], {"flag": True}, {"name": "3"}):
    with pytest.raises(TypeError, match="slots must be ints"):
      data_utils.register_slots(slots)
