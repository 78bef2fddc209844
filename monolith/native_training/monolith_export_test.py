"""Tests for monolith_export."""

import pytest

from monolith.native_training.monolith_export import monolith_export


def test_tags_function_and_returns_it_unchanged():

  def f(x):
    return x + 1

  assert monolith_export(f) is f
  assert getattr(f, "__monolith_doc") is None
  assert f(1) == 2


def test_decorates_class():

  @monolith_export
  class Layer:
    value = 3

  assert Layer.value == 3
  assert hasattr(Layer, "__monolith_doc")
  assert Layer.__dict__["__monolith_doc"] is None


def test_methods_decorated_in_a_class_body_keep_the_literal_name():
  # Inside a class body `obj.__monolith_doc` would be name-mangled to
  # `_Layer__monolith_doc`, which documentation tooling does not look for.

  class Layer:

    @monolith_export
    def call(self):
      return 1

  assert "__monolith_doc" in Layer.__dict__["call"].__dict__
  assert not any("__monolith_doc" in name and name != "__monolith_doc"
                 for name in Layer.__dict__["call"].__dict__)

