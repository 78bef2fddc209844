"""Whether the model is being built for export, and the export's context.

Model code builds its graph differently for training and for a SavedModel
export (e.g. hash tables switch their entries to the serving layout). The
exporter wraps graph construction in `enter_export_mode(mode)`; model code
asks `is_exporting()` (or the standalone/distributed variants) and records
per-graph signatures and sub-graphs in the `ExportContext` returned by
`get_current_export_ctx()`.

The state is process-global (`EXPORT_MODE`, `EXPORT_CTX`) and export modes do
not nest.
"""

import collections
import contextlib
import enum
from typing import Any, Dict, Iterable, Iterator, Optional

import tensorflow as tf

from monolith.native_training.monolith_export import monolith_export
from monolith.native_training.utils import add_to_collections


class ExportMode(enum.Enum):
  NONE = 0
  STANDALONE = 1
  DISTRIBUTED = 2


SavedModelSignature = collections.namedtuple("SavedModelSignature",
                                             ["name", "inputs", "outputs"])


@monolith_export
class ExportContext:
  """What an export collects while the graphs are built.

  Args:
    with_remote_gpu: whether the exported model runs its dense part on a
      remote GPU.
  """

  def __init__(self, with_remote_gpu: bool = False):
    self._sub_graphs = collections.defaultdict(tf.Graph)
    self._dense_sub_graphs = collections.defaultdict(tf.Graph)
    # Graph -> signature name -> SavedModelSignature.
    self._signatures = collections.defaultdict(dict)
    self._with_remote_gpu = with_remote_gpu

  def sub_graph(self, name: str) -> tf.Graph:
    """The sub graph `name`, created empty on first use."""
    return self._sub_graphs[name]

  def dense_sub_graph(self, name: str) -> tf.Graph:
    """The dense sub graph `name`, created empty on first use."""
    return self._dense_sub_graphs[name]

  @property
  def dense_sub_graphs(self) -> Dict[str, tf.Graph]:
    return self._dense_sub_graphs

  @property
  def sub_graphs(self) -> Dict[str, tf.Graph]:
    return self._sub_graphs

  @property
  def with_remote_gpu(self) -> bool:
    return self._with_remote_gpu

  @property
  def sub_graph_num(self) -> int:
    """The number of sub graphs created so far."""
    return len(self._sub_graphs)

  def signatures(self, graph: tf.Graph) -> Iterable[SavedModelSignature]:
    """The signatures added for `graph`, in the order they were added."""
    return self._signatures[graph].values()

  def add_signature(self, graph: tf.Graph, name: str, inputs: Dict[str, Any],
                    outputs: Dict[str, Any]) -> None:
    """Sets the signature `name` of `graph`, replacing one of that name.

    The name is also added to the default graph's "signature_name"
    collection. The signature keeps copies of `inputs` and `outputs`, so
    that a later `merge_signature` changes this signature alone.
    """
    add_to_collections("signature_name", name)
    self._signatures[graph][name] = SavedModelSignature(name=name,
                                                        inputs=dict(inputs),
                                                        outputs=dict(outputs))

  def merge_signature(self, graph: tf.Graph, name: str, inputs: Dict[str, Any],
                      outputs: Dict[str, Any]) -> None:
    """Adds `inputs` and `outputs` to the signature `name` of `graph`.

    The signature is created empty first when `graph` has none of that name.
    """
    signatures = self._signatures[graph]
    if name not in signatures:
      signatures[name] = SavedModelSignature(name=name, inputs={}, outputs={})
    signatures[name].inputs.update(inputs)
    signatures[name].outputs.update(outputs)


EXPORT_MODE = ExportMode.NONE
EXPORT_CTX = None


@monolith_export
def is_exporting() -> bool:
  """Whether a model export is being built."""
  return EXPORT_MODE != ExportMode.NONE


@monolith_export
def is_exporting_standalone() -> bool:
  """Whether a standalone (single-process) model export is being built."""
  return EXPORT_MODE == ExportMode.STANDALONE


@monolith_export
def is_exporting_distributed() -> bool:
  """Whether a distributed (entry + parameter servers) export is built."""
  return EXPORT_MODE == ExportMode.DISTRIBUTED


@monolith_export
def get_current_export_ctx() -> Optional[ExportContext]:
  """The context of the export being built, or None outside export mode."""
  return EXPORT_CTX


@monolith_export
@contextlib.contextmanager
def enter_export_mode(
    mode: ExportMode,
    export_ctx: Optional[ExportContext] = None) -> Iterator[ExportContext]:
  """Builds the graph for export inside the `with` block.

  Args:
    mode: `ExportMode.STANDALONE` or `ExportMode.DISTRIBUTED`.
    export_ctx: the context to collect into; a new one by default.

  Yields:
    The export context, also returned by `get_current_export_ctx()`.

  Raises:
    ValueError: `mode` is not STANDALONE or DISTRIBUTED.
    RuntimeError: export mode is already entered.
  """
  global EXPORT_MODE, EXPORT_CTX
  if mode not in (ExportMode.STANDALONE, ExportMode.DISTRIBUTED):
    raise ValueError(
        f"mode must be ExportMode.STANDALONE or DISTRIBUTED, got {mode!r}")
  if EXPORT_MODE != ExportMode.NONE or EXPORT_CTX is not None:
    raise RuntimeError(f"export mode can't be nested: already in {EXPORT_MODE}")
  EXPORT_MODE = mode
  EXPORT_CTX = export_ctx if export_ctx is not None else ExportContext()
  try:
    yield EXPORT_CTX
  finally:
    EXPORT_MODE = ExportMode.NONE
    EXPORT_CTX = None


@monolith_export
def is_dry_run_or_exporting() -> bool:
  """Whether exporting, or the default graph is marked with a `dry_run` attr."""
  graph = tf.compat.v1.get_default_graph()
  return is_exporting() or hasattr(graph, "dry_run")
