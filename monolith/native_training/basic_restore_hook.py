"""A session hook that runs restore listeners once the session exists.

`CheckpointRestorerHook` restores nothing itself: right after a
`MonitoredSession` creates its session (and after the session's own
checkpoint restore and initialization), it calls each
`CheckpointRestorerListener`'s `before_restore`, then each one's
`after_restore`. Listeners do the actual work, e.g. loading hash tables whose
data is kept outside the TF checkpoint.
"""

from typing import FrozenSet, Iterable, List, Optional, Sequence
import weakref

from absl import logging
import tensorflow as tf


# Per graph, the CheckpointRestorerHooks whose begin() has run and whose
# after_create_session has not yet, each with its registration (a new
# object at each begin()): hooks that must run after them (the saver hooks
# in save_utils) check there is none. Weak: no hook or graph kept alive.
_PENDING_RESTORERS = weakref.WeakKeyDictionary()


def restorer_registrations() -> FrozenSet[object]:
  """The registrations of the default graph's pending restorer hooks now.

  A hook that must run after the restorer hooks notes them in its begin()
  and passes them to `pending_restorer_hooks`: a restorer hook whose
  session creation failed stays pending while referenced, and a later
  MonitoredSession of the graph, with hooks of its own, must not wait for
  it. (Its own restorer hooks listed before it register again before its
  begin(), and have run before its check.)
  """
  graph = tf.compat.v1.get_default_graph()
  return frozenset(_PENDING_RESTORERS.get(graph, {}).values())


def pending_restorer_hooks(
    graph: tf.Graph,
    registered_before: Iterable[object] = ()) -> List["CheckpointRestorerHook"]:
  """The restorer hooks of `graph`'s MonitoredSession being created that
  have not restored yet, but those whose registration is among
  `registered_before` (see `restorer_registrations`)."""
  before = frozenset(registered_before)
  return [hook for hook, registration in
          list(_PENDING_RESTORERS.get(graph, {}).items())
          if registration not in before]


def check_listeners(listeners: Sequence[object], what: str,
                    methods: Sequence[str], instead: str) -> None:
  """Raises TypeError naming the first of `listeners` without every one of
  `methods` (a listener of the other kind: it would fail, or be passed
  over, only once the session runs); `instead` says where such a one
  goes."""
  for i, listener in enumerate(listeners):
    missing = [m for m in methods if not callable(getattr(listener, m, None))]
    if missing:
      raise TypeError(
          f"{what}[{i}] is a {type(listener).__name__}, which has no "
          f"{', '.join(missing)}: is it meant for {instead}?")


class CheckpointRestorerListener:
  """Interface of listeners that act before or after a restore.

  All methods do nothing by default; override the ones needed.
  """

  def begin(self) -> None:
    """Called once, before the graph is finalized."""

  def before_restore(self, session: tf.compat.v1.Session) -> None:
    """Called first when the session has been created."""

  def after_restore(self, session: tf.compat.v1.Session) -> None:
    """Called after every listener's `before_restore`."""

  def end(self, session: tf.compat.v1.Session) -> None:
    """Called when the session ends normally."""


class CheckpointRestorerHook(tf.compat.v1.train.SessionRunHook):
  """Calls `CheckpointRestorerListener`s once the session is created.

  Args:
    listeners: called in order for each stage: every `before_restore`, then
      every `after_restore`; at the session's normal end, every `end` (a
      listener without one, as the original's hook never called it, is
      passed over there).

  Subclasses may override `_restore(session)`, which runs the listeners, as
  the original's did.
  """

  def __init__(
      self,
      listeners: Optional[Sequence[CheckpointRestorerListener]] = None):
    logging.info("Create CheckpointRestorerHook.")
    self._listeners = list(listeners or [])
    # What the original's hook called; `end` is optional (see end()).
    check_listeners(self._listeners, "CheckpointRestorerHook listeners",
                    ("begin", "before_restore", "after_restore"),
                    "a CheckpointSaverHook's listeners")

  def begin(self) -> None:
    _PENDING_RESTORERS.setdefault(tf.compat.v1.get_default_graph(),
                                  weakref.WeakKeyDictionary())[self] = object()
    for listener in self._listeners:
      listener.begin()

  def after_create_session(self, session: tf.compat.v1.Session,
                           coord: Optional[tf.train.Coordinator]) -> None:
    del coord  # Unused.
    try:
      self._restore(session)
    finally:
      # Not pending once it ran, even when a listener failed (the session
      # creation fails with it): a later session of the graph, with hooks
      # of its own, is not told this one has yet to run.
      _PENDING_RESTORERS.get(session.graph, {}).pop(self, None)

  def _restore(self, session: tf.compat.v1.Session) -> None:
    """Runs every listener's `before_restore`, then every `after_restore`."""
    logging.info("Calling checkpoint restorer listeners.")
    for listener in self._listeners:
      listener.before_restore(session)
    for listener in self._listeners:
      listener.after_restore(session)

  def end(self, session: tf.compat.v1.Session) -> None:
    for listener in self._listeners:
      end = getattr(listener, "end", None)
      if callable(end):
        end(session)
