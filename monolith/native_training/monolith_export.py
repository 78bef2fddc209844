"""Marks classes and functions as part of Monolith's exported (documented) API.

`monolith_export` is a no-op decorator for behaviour: it only tags the object
with a `__monolith_doc` attribute (None) that documentation tooling looks for.
"""

from typing import TypeVar

_T = TypeVar("_T")


def monolith_export(obj: _T) -> _T:
  """Tags `obj` as exported and returns it unchanged."""
  # setattr keeps the literal name: inside a class body `obj.__monolith_doc`
  # would be name-mangled, and tooling looks for the plain attribute.
  setattr(obj, "__monolith_doc", None)
  return obj
