"""Slot <-> feature-name conventions of sparse features.

A sparse feature without a feature list is named `slot_<N>` (`fc_slot_<N>` in
the ToB environment); other names get the slot registered for them with
`register_slots`, or else the next free number in order of first use.
"""

import numbers
from typing import Dict, List, Optional, Union

TOBENV = False

# Registered name -> slot (register_slots).
NAME_TO_SLOT: Dict[str, int] = {}
# Slots handed out to unregistered names, in order of first use.
_ASSIGNED_SLOTS: Dict[str, int] = {}
# The original's name (and spelling) of that map: its tests clear it.
USED_FREATUE_NAMES = _ASSIGNED_SLOTS


def enable_tob_env() -> None:
  """Names slot features `fc_slot_<N>` instead of `slot_<N>`."""
  global TOBENV
  TOBENV = True


def get_slot_feature_name(slot: int) -> str:
  return f"fc_slot_{slot}" if TOBENV else f"slot_{slot}"


def is_numbered_by_use(feature_name: str) -> bool:
  """Whether get_slot_from_feature_name numbers the name in order of first
  use (neither registered nor a `slot_<N>` / `fc_slot_<N>` name)."""
  return (feature_name not in NAME_TO_SLOT and
          not feature_name.startswith(("slot_", "fc_slot_")))


def get_slot_from_feature_name(feature_name: str) -> Optional[int]:
  """The slot of a feature name; None for a malformed `slot_<N>` name."""
  if feature_name in NAME_TO_SLOT:
    return NAME_TO_SLOT[feature_name]
  if feature_name.startswith(("slot_", "fc_slot_")):
    suffix = feature_name.rsplit("_", 1)[-1]
    # isdecimal: "²".isdigit(), and int() refuses it.
    return int(suffix) if suffix.isascii() and suffix.isdecimal() else None
  if feature_name not in _ASSIGNED_SLOTS:
    _ASSIGNED_SLOTS[feature_name] = len(_ASSIGNED_SLOTS) + 1
  return _ASSIGNED_SLOTS[feature_name]


def register_slots(sparse_features: Union[List[int], Dict[str, int]]) -> None:
  """Registers slots: a list of slots (named by get_slot_feature_name) or a
  name -> slot dict."""
  if isinstance(sparse_features, (list, tuple)):
    sparse_features = {
        get_slot_feature_name(slot): slot for slot in sparse_features
    }
  elif not isinstance(sparse_features, dict):
    raise TypeError("register_slots takes a list of slots or a name -> slot "
                    f"dict, got {type(sparse_features).__name__}")
  # Numpy's integers too, as Python's; not bools (True named "slot_True").
  if not all(
      isinstance(slot, numbers.Integral) and not isinstance(slot, bool)
      for slot in sparse_features.values()):
    raise TypeError(f"slots must be ints, got {sparse_features!r}")
  NAME_TO_SLOT.update(
      {name: int(slot) for name, slot in sparse_features.items()})
