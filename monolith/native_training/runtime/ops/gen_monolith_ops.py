"""Loads monolith's TF op library and exposes its ops as Python functions.

    from monolith.native_training.runtime.ops import gen_monolith_ops
    handle = gen_monolith_ops.create_monolith_multi_hash_table(...)

Every op registered in libmonolith_ops.so is an attribute of this module,
under its snake_case name (e.g. monolith_multi_hash_table_lookup).
"""

import os

import tensorflow as tf

_LIBRARY = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                        "libmonolith_ops.so")

_ops = tf.load_op_library(_LIBRARY)
globals().update({
    name: getattr(_ops, name) for name in dir(_ops) if not name.startswith("_")
})
