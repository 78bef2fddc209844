"""Tests for ckpt_info.proto: text format, as written next to checkpoints."""

from google.protobuf import text_format

from monolith.native_training.proto import ckpt_info_pb2


def test_text_format_round_trip():
  info = ckpt_info_pb2.CkptInfo()
  info.feature_counts["fc_user_id"] = 12345
  info.feature_counts["fc_item_id"] = 7
  info.slot_counts[1] = 3
  text = str(info)
  parsed = text_format.Parse(text, ckpt_info_pb2.CkptInfo())
  assert parsed == info
  assert dict(parsed.feature_counts) == {"fc_user_id": 12345, "fc_item_id": 7}
  assert dict(parsed.slot_counts) == {1: 3}


def test_parses_map_entries_in_text_format():
  text = ('feature_counts {\n  key: "slot_1"\n  value: 2\n}\n'
          'slot_counts {\n  key: 4\n  value: 5\n}\n')
  info = text_format.Parse(text, ckpt_info_pb2.CkptInfo())
  assert info.feature_counts["slot_1"] == 2
  assert info.slot_counts[4] == 5


def test_descriptor_matches_the_original():
  descriptor = ckpt_info_pb2.CkptInfo.DESCRIPTOR
  assert descriptor.full_name == "monolith.CkptInfo"
  fields = {f.name: f.number for f in descriptor.fields}
  assert fields == {"slot_counts": 1, "feature_counts": 2}
  entry = descriptor.fields_by_name["slot_counts"].message_type
  assert entry.fields_by_name["key"].type == entry.fields_by_name[
      "key"].TYPE_INT32
  assert entry.fields_by_name["value"].type == entry.fields_by_name[
      "value"].TYPE_INT64


def test_wire_bytes():
  info = ckpt_info_pb2.CkptInfo()
  info.slot_counts[1] = 2
  # Field 1, length-delimited entry {key(1): 1, value(2): 2}.
  assert info.SerializeToString() == b"\x0a\x04\x08\x01\x10\x02"
