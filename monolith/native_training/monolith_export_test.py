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


def test_undecorated_objects_are_not_tagged():

  def g():
    pass

  assert not hasattr(g, "__monolith_doc")

