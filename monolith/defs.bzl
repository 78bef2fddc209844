"""Build macros shared by monolith's packages."""

def monolith_py_test(name, srcs = None, deps = [], data = [], size = "small", **kwargs):
    """A py_test that runs its test file under pytest (//monolith:pytest_runner).

    Args:
      name: target name; the test file defaults to <name>.py.
      srcs: test sources, the test file first (default [name + ".py"]).
      deps: py_library dependencies.
      data: runtime files.
      size: Bazel test size.
      **kwargs: passed to py_test.
    """
    srcs = srcs or [name + ".py"]
    native.py_test(
        name = name,
        srcs = srcs + ["//monolith:pytest_runner.py"],
        main = "//monolith:pytest_runner.py",
        args = ["$(rootpath %s)" % srcs[0]],
        deps = deps,
        data = data,
        size = size,
        python_version = "PY3",
        **kwargs
    )
