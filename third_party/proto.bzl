"""monolith_proto_library: one .proto -> proto_library, C++ and Python targets.

    monolith_proto_library(
        name = "example_proto",
        srcs = ["idl/matrix/proto/example.proto"],
        deps = [":line_id_proto"],
        import_root = "protos",   # folder the import paths are relative to
    )

defines
  example_proto       proto_library
  example_cc_proto    cc_proto_library (against TF's bundled protobuf,
                      linked through libtensorflow_framework.so.2)
  example_py_proto    py_library holding the generated *_pb2.py, importable
                      by the proto's import path (idl.matrix.proto.example_pb2)

`deps` name other monolith_proto_library targets (their *_proto names).
"""

def _py_proto_gen_impl(ctx):
    info = ctx.attr.proto[ProtoInfo]
    root = info.proto_source_root
    package = ctx.label.package
    import_root = ctx.attr.import_root
    if import_root and package != import_root and not package.startswith(import_root + "/"):
        fail("package %s is not under import_root %s" % (package, import_root))
    sub_package = package[len(import_root):].lstrip("/")

    outputs = []
    for src in info.direct_sources:
        import_path = src.path[len(root):].lstrip("/") if root and root != "." else src.short_path
        if not import_path.startswith(sub_package):
            fail("%s is outside package %s" % (import_path, package))
        rel = import_path[len(sub_package):].lstrip("/")
        outputs.append(ctx.actions.declare_file(rel[:-len(".proto")] + "_pb2.py"))

    out_root = ctx.bin_dir.path
    if ctx.label.workspace_root:
        out_root += "/" + ctx.label.workspace_root
    if import_root:
        out_root += "/" + import_root

    args = ctx.actions.args()
    args.add_all(info.transitive_proto_path, format_each = "-I%s")
    args.add("--python_out=" + out_root)
    args.add_all(info.direct_sources)
    ctx.actions.run(
        executable = ctx.executable._protoc,
        arguments = [args],
        inputs = info.transitive_sources,
        outputs = outputs,
        mnemonic = "PyProtoGen",
        progress_message = "Generating Python protos for %s" % ctx.label,
    )
    return [DefaultInfo(files = depset(outputs))]

_py_proto_gen = rule(
    implementation = _py_proto_gen_impl,
    attrs = {
        "proto": attr.label(providers = [ProtoInfo], mandatory = True),
        "import_root": attr.string(),
        "_protoc": attr.label(
            default = Label("@local_config_tf//:protoc"),
            executable = True,
            allow_single_file = True,
            cfg = "exec",
        ),
    },
)

def _py_imports_entry(package, import_root):
    """The py_library `imports` entry that puts import_root on sys.path."""
    if not import_root:
        return []
    depth = len(package[len(import_root):].strip("/").split("/")) if package != import_root else 0
    return ["/".join([".."] * depth) or "."]

def monolith_proto_library(name, srcs, deps = [], import_root = "", visibility = None):
    if not name.endswith("_proto"):
        fail("monolith_proto_library name must end in _proto: " + name)
    base = name[:-len("_proto")]
    package = native.package_name()

    native.proto_library(
        name = name,
        srcs = srcs,
        deps = deps,
        strip_import_prefix = ("/" + import_root) if import_root else None,
        visibility = visibility,
    )
    native.cc_proto_library(
        name = base + "_cc_proto",
        deps = [":" + name],
        visibility = visibility,
    )
    _py_proto_gen(
        name = base + "_py_proto_gen",
        proto = ":" + name,
        import_root = import_root,
    )
    native.py_library(
        name = base + "_py_proto",
        srcs = [":" + base + "_py_proto_gen"],
        imports = _py_imports_entry(package, import_root),
        deps = [d[:-len("_proto")] + "_py_proto" for d in deps],
        visibility = visibility,
    )
