"""Repository rules over the Bazel rule sets Debian installs under /usr/share/bazel."""

# Files of Debian's rules_cc (0.0.4) that call use_cpp_toolchain(), which Bazel
# 4.2.3's @bazel_tools does not have yet.
_RULES_CC_FILES_TO_PATCH = [
    "cc/private/rules_impl/cc_flags_supplier.bzl",
    "cc/private/rules_impl/compiler_flag.bzl",
]

def _patched_rules_cc_impl(ctx):
    src = ctx.attr.path
    result = ctx.execute(["cp", "-rL", src + "/.", "."])
    if result.return_code != 0:
        fail("copying rules_cc from %s failed (is bazel-rules-cc installed?): %s" % (src, result.stderr))

    # A MODULE.bazel file would make Bazel 4 treat the copy as a bzlmod module.
    ctx.delete("MODULE.bazel")
    for path in _RULES_CC_FILES_TO_PATCH:
        text = ctx.read(path)
        text = text.replace(', "use_cpp_toolchain")', ")")
        text = text.replace("use_cpp_toolchain()", '["@bazel_tools//tools/cpp:toolchain_type"]')
        ctx.file(path, text, executable = False)

patched_rules_cc = repository_rule(
    doc = "Debian's rules_cc, made loadable by Bazel 4.2.3.",
    implementation = _patched_rules_cc_impl,
    attrs = {"path": attr.string(mandatory = True)},
    local = True,
)

def _offline_coverage_tools_impl(ctx):
    script = "#!/bin/sh\necho 'bazel coverage is not available: this workspace builds offline' >&2\nexit 1\n"
    ctx.file("unavailable.sh", script, executable = True)
    ctx.file("BUILD", """# Generated offline stand-in for @remote_coverage_tools.
package(default_visibility = ["//visibility:public"])

sh_binary(
    name = "coverage_report_generator",
    srcs = ["unavailable.sh"],
)

sh_binary(
    name = "lcov_merger",
    srcs = ["unavailable.sh"],
)
""", executable = False)

offline_coverage_tools = repository_rule(
    doc = """Stands in for @remote_coverage_tools, which every *_test depends on
    implicitly and Bazel would download. `bazel coverage` is unavailable;
    `bazel test` is unaffected.""",
    implementation = _offline_coverage_tools_impl,
    local = True,
)
