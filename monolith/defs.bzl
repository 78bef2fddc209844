"""Build macros shared by monolith's packages."""

def monolith_py_test(name, srcs = None, deps = [], data = [], size = "small", **kwargs):
    """A py_test that runs its test file under pytest (//monolith:pytest_runner).

    Load it from "@monolith//monolith:defs.bzl" in another workspace.

    Args:
      name: target name; the test file defaults to <name>.py.
      srcs: test sources, the test file first (default [name + ".py"]).
      deps: py_library dependencies.
      data: runtime files.
      size: Bazel test size.
      **kwargs: passed to py_test.
    """
    srcs = srcs or [name + ".py"]

    # Label() resolves in monolith's repository, so the macro also works in a
    # workspace that loads it from @monolith (examples/consumer).
    runner = Label("//monolith:pytest_runner.py")
    native.py_test(
        name = name,
        srcs = srcs + [runner],
        main = runner,
        args = ["$(rootpath %s)" % srcs[0]],
        deps = deps,
        data = data,
        size = size,
        python_version = "PY3",
        legacy_create_init = False,
        **kwargs
    )

def monolith_py_binary(name, **kwargs):
    """A py_binary that imports `monolith` as the package, whatever the
    depending workspace's flags.

    Bazel's legacy __init__.py files (unless the workspace sets
    --incompatible_default_to_explicit_init_py) would make the repository's
    runfiles folder, not the package, what `import monolith` finds when
    another workspace runs it as @monolith//...

    Args:
      name: target name.
      **kwargs: passed to py_binary.
    """
    native.py_binary(
        name = name,
        python_version = "PY3",
        legacy_create_init = False,
        **kwargs
    )

# Warnings are errors in the TF-free C++ (the engine, its optimizers,
# initializers, compressors and the checkpoint format): TF's headers are not
# compiled there. Only in this workspace's own builds (its .bazelrc sets
# --define=monolith_werror=1): a workspace depending on this one may build
# with another compiler, whose new warnings must not fail its build.
MONOLITH_WARNING_COPTS = ["-Wall"] + select({
    str(Label("//monolith:werror")): ["-Werror"],
    "//conditions:default": [],
})

# AddressSanitizer: compile flags of the instrumented copies of libraries a
# fuzz test links (monolith_asan_cc_library), and the test's own flags
# (monolith_asan_cc_test). -O1 keeps ASan's reports precise and the test fast;
# -g gives them file:line.
MONOLITH_ASAN_COPTS = [
    "-fsanitize=address",
    "-fno-omit-frame-pointer",
    "-O1",
    "-g",
]
MONOLITH_ASAN_LINKOPTS = ["-fsanitize=address"]

# ThreadSanitizer, likewise, for tests of code that locks
# (monolith_tsan_cc_library, monolith_tsan_cc_test).
MONOLITH_TSAN_COPTS = [
    "-fsanitize=thread",
    "-fno-omit-frame-pointer",
    "-O1",
    "-g",
]
MONOLITH_TSAN_LINKOPTS = ["-fsanitize=thread"]

def _sanitized_cc_library(name, sanitizer_copts, srcs, hdrs, deps, copts, **kwargs):
    native.cc_library(
        name = name,
        srcs = srcs,
        hdrs = hdrs,
        deps = deps,
        copts = sanitizer_copts + copts,
        testonly = True,
        linkstatic = True,
        **kwargs
    )

def _sanitized_cc_test(name, sanitizer_copts, sanitizer_linkopts, srcs, deps, copts, linkopts, **kwargs):
    native.cc_test(
        name = name,
        srcs = srcs,
        deps = deps,
        copts = sanitizer_copts + copts,
        linkopts = sanitizer_linkopts + linkopts,
        linkstatic = True,
        **kwargs
    )

def monolith_asan_cc_library(name, srcs, hdrs = [], deps = [], copts = [], **kwargs):
    """An AddressSanitizer-instrumented copy of the code of cc_libraries.

    List the .cc files (and headers) of the libraries to instrument in srcs
    and hdrs, and their other dependencies in deps. A test links this
    target instead of those libraries, never beside them: the same sources
    linked twice would define every symbol twice. Libraries that are not
    copied (protos, TF's shared library) stay uninstrumented and work as
    they are under ASan.

    Args:
      name: target name, by convention <library>_asan.
      srcs: the instrumented .cc files.
      hdrs: their headers.
      deps: everything else they need.
      copts: extra compile flags, after the ASan ones.
      **kwargs: passed to cc_library.
    """
    _sanitized_cc_library(name, MONOLITH_ASAN_COPTS, srcs, hdrs, deps, copts, **kwargs)

def monolith_asan_cc_test(name, srcs, deps = [], copts = [], linkopts = [], **kwargs):
    """A cc_test built and linked with AddressSanitizer.

    The code under test must come from monolith_asan_cc_library targets to
    be instrumented too; linked statically, so the instrumented objects are
    part of the binary.

    Args:
      name: target name.
      srcs: test sources (compiled with ASan).
      deps: dependencies.
      copts: extra compile flags.
      linkopts: extra link flags.
      **kwargs: passed to cc_test; env's ASAN_OPTIONS are kept, with
        allow_user_poisoning=0 added.
    """

    # Protobuf's arenas (RecordScratch parses on one) take back memory of
    # grown repeated fields poisoned by the templates this binary
    # instantiates with ASan, and hand it out again from the uninstrumented
    # runtime in libtensorflow_framework.so.2, which never unpoisons it: a
    # false use-after-poison of partially instrumented builds. Our code
    # poisons nothing itself.
    env = dict(kwargs.pop("env", {}))
    env["ASAN_OPTIONS"] = ":".join(
        [o for o in [env.get("ASAN_OPTIONS", ""), "allow_user_poisoning=0"] if o],
    )
    _sanitized_cc_test(name, MONOLITH_ASAN_COPTS, MONOLITH_ASAN_LINKOPTS, srcs, deps, copts, linkopts, env = env, **kwargs)

def monolith_tsan_cc_library(name, srcs, hdrs = [], deps = [], copts = [], **kwargs):
    """A ThreadSanitizer-instrumented copy of the code of cc_libraries.

    As monolith_asan_cc_library: link it instead of those libraries, never
    beside them. Memory that only uninstrumented code touches is invisible
    to ThreadSanitizer, so copy every library whose writes race-checked
    code could race with.

    Args:
      name: target name, by convention <library>_tsan.
      srcs: the instrumented .cc files.
      hdrs: their headers.
      deps: everything else they need.
      copts: extra compile flags, after the TSan ones.
      **kwargs: passed to cc_library.
    """
    _sanitized_cc_library(name, MONOLITH_TSAN_COPTS, srcs, hdrs, deps, copts, **kwargs)

def monolith_tsan_cc_test(name, srcs, deps = [], copts = [], linkopts = [], **kwargs):
    """A cc_test built and linked with ThreadSanitizer.

    The code under test must come from monolith_tsan_cc_library targets.
    A data race fails the test (ThreadSanitizer exits with status 66).

    Args:
      name: target name.
      srcs: test sources (compiled with TSan).
      deps: dependencies.
      copts: extra compile flags.
      linkopts: extra link flags.
      **kwargs: passed to cc_test.
    """
    _sanitized_cc_test(name, MONOLITH_TSAN_COPTS, MONOLITH_TSAN_LINKOPTS, srcs, deps, copts, linkopts, **kwargs)
