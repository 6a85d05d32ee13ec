"""The ``transformer-conformance`` command: check an adapter against the spec from any repository.

    transformer-conformance --adapter mypkg.mod:obj [--component NAME ...] [--report DIR]
                            [--profile dev|ci|thorough|kernel] [--scale default|production]
                            [--max-examples N] [--device cpu|cuda] [--semantics NAME=VALUE]
                            [-n N] [any other pytest option]

    --scale production (= --profile kernel) runs only the kernel-scale tests: attention and its
    variants (grouped heads, windows, soft-cap, ALiBi, sinks; the log-sum-exp) at lengths 512 to
    16384 against the streaming float64 oracle (spec/kernel_scale.py), with an error-vs-S plot in
    the report.
    --semantics fully_masked_row=uniform (or =nan) checks against a named alternative of one of
    the spec's conventions (reference/semantics.py): a library is judged by the convention it
    documents, and the report records the profile.
    transformer-conformance list                  the components and their signatures
    transformer-conformance explain COMPONENT     one component's contract
    transformer-conformance merge DIR... --out D  one matrix, JSON and Markdown from shard reports
    transformer-conformance --version             the package's and the spec's versions

Exit codes: 0 every test conforms (declared deviations allowed), 1 a nonconformance, 2 a usage error
(unknown component or adapter, bad option), 3 the adapter could not be imported.
"""

from __future__ import annotations

import argparse
import inspect
import sys
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from spec.core import Component

OK, NONCONFORMANCE, USAGE, IMPORT = 0, 1, 2, 3


def _components() -> dict:
    from spec.registry import COMPONENTS

    return COMPONENTS


def signature(component: Component) -> str:
    """name(arg, arg=default, ...) from the reference itself, the one source of the defaults."""
    sig = inspect.signature(component.reference)
    plain = [p.replace(annotation=inspect.Parameter.empty) for p in sig.parameters.values()]
    bare = sig.replace(parameters=plain, return_annotation=inspect.Signature.empty)
    return f"{component.name}{bare}"


def list_components() -> str:
    lines = []
    family = None
    for c in sorted(_components().values(), key=lambda c: (c.family, c.name)):
        if c.family != family:
            family = c.family
            lines.append(f"{family}:")
        lines.append(f"  {signature(c)}")
        lines.append(f"      {c.shapes}")
    return "\n".join(lines)


ADAPTER_CONTRACT = """\
How an adapter is called (adapters/__init__.py states the whole interface):
    A function named like the component receives the keyword arguments above as NumPy arrays and
    Python values and returns a NumPy array of the output's shape in the inputs' dtype (token ids
    and masks: their integer/bool dtype). bfloat16 arrives as ml_dtypes.bfloat16 (NumPy has none):
    to torch, torch.from_numpy(a.view(np.int16)).view(torch.bfloat16), and back, t.view(torch.int16)
    .numpy().view(ml_dtypes.bfloat16); jax takes and gives ml_dtypes arrays as they are. An argument
    that holds its default may be left out of a call, so the adapter's own defaults must be the
    spec's. Raise adapters.Unsupported for an input your library cannot express (counted per
    example; Unsupported(reason, everywhere=True) when no call that asks for it could be expressed,
    so the test stops after 3 examples). Gradients: vjp(component, inputs, cotangent, wrt) ->
    {path: gradient of <cotangent, output>} for the paths in wrt ("q", "params.w_q"), same shape
    and dtype as the input; an array passed as two arguments (self-attention: query is key is
    value) is one variable: its gradient sums its uses."""


def explain(name: str) -> str:
    """A component's contract: signature, shapes, dtypes, argument domains, properties, bad
    inputs."""
    import importlib

    c = _components()[name]
    wrap = lambda text, indent="    ": textwrap.fill(
        " ".join(str(text).split()), 100, initial_indent=indent, subsequent_indent=indent
    )
    lines = [
        signature(c),
        "",
        f"family: {c.family}    shapes: {c.shapes}",
        f"dtypes: {', '.join(d.name for d in c.dtypes)}",
        "",
    ]
    doc = inspect.getdoc(c.reference) or ""
    lines += ["The oracle (reference):", wrap(doc), ""]
    if c.args:
        lines.append("Arguments (domain; the regions every run draws):")
        for arg in c.args:
            lines.append(f"  {arg.signature_text()}  [{arg.kind}]")
            lines.append(wrap(arg.domain, "      "))
            if arg.regions:
                lines.append(wrap("drawn: " + "; ".join(r.name for r in arg.regions), "      "))
            for entry in arg.entries:
                lines.append(f"      .{entry.signature_text()}: {entry.domain}")
            for mutant, why in arg.invisible.items():
                lines.append(wrap(f"a change no property can see ({mutant}): {why}", "      "))
        lines.append("")
    lines.append("Properties (each over the variants in brackets, at the dtypes after @):")
    for p in c.properties:
        variants = ", ".join(str(v) for v in p.variants if v is not None)
        dtypes = ", ".join(d.name for d in p.dtypes if d in c.dtypes)
        lines.append(
            f"  {p.name}{f' [{variants}]' if variants else ''} @ "
            f"{dtypes}{' (gradient: the vjp)' if p.kind == 'gradient' else ''}"
        )
        lines.append(wrap(p.doc or "", "      "))
    lines += ["", "Bad inputs (the reference raises ValueError; an adapter must raise too):"]
    lines += [f"  {b.name}: {b.doc}" for b in c.bad_inputs] or ["  (none)"]
    from spec.registry import SOURCES

    module = importlib.import_module(SOURCES[name])
    if module.__doc__:
        lines += [
            "",
            f"From the spec ({module.__name__}):",
            textwrap.indent(module.__doc__.strip(), "    "),
        ]
    return "\n".join(lines)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    from spec import SPEC_VERSION

    try:
        package = version("transformer-conformance")
    except PackageNotFoundError:
        package = "(not installed)"
    return f"transformer-conformance {package}, spec {SPEC_VERSION}"


def run(argv: list[str]) -> int:
    """The conformance suite through pytest, with this command's options in front."""
    import pytest

    tests = (
        Path(__file__).parent / "conformance"
    )  # not imported from the plugin: pytest must import it first
    parser = argparse.ArgumentParser(prog="transformer-conformance", add_help=False)
    parser.add_argument("-n", dest="workers", default=None)
    known, rest = parser.parse_known_args(argv)
    # this process imported the package before pytest could rewrite its asserts (it has none)
    quiet = [
        "-W",
        "ignore:Module already imported so cannot be rewritten:pytest.PytestAssertRewriteWarning",
    ]
    args = [str(tests), "--conformance", "-p", "no:cacheprovider", *quiet, *rest]
    if known.workers is not None:
        args += ["-n", known.workers]
    code = int(pytest.main(args))
    # pytest: 0 passed, 1 failures, 2 interrupted, 3 internal error, 4 usage error, 5 no tests
    # collected
    return {0: OK, 1: NONCONFORMANCE, 4: USAGE, 5: USAGE}.get(code, code)


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except BrokenPipeError:  # `transformer-conformance list | head`: the reader left, not an error
        sys.stderr.close()
        return OK


def _main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] in (["-h"], ["--help"]):
        print(__doc__)
        return OK
    if argv[:1] == ["--version"]:
        print(_version())
        return OK
    if argv[:1] == ["list"]:
        print(list_components())
        return OK
    if argv[:1] == ["explain"]:
        names = argv[1:]
        unknown = [n for n in names if n not in _components()]
        if not names or unknown:
            import difflib

            near = [
                m for n in unknown for m in difflib.get_close_matches(n, list(_components()), n=3)
            ]
            print(
                f"explain needs a component name; unknown {unknown}"
                + (f"; did you mean {', '.join(near)}?" if near else ""),
                file=sys.stderr,
            )
            return USAGE
        print("\n\n".join(explain(n) for n in names))
        return OK
    if argv[:1] == ["merge"]:
        from transformer_conformance.report import merge

        parser = argparse.ArgumentParser(prog="transformer-conformance merge")
        parser.add_argument(
            "dirs", nargs="+", type=Path, help="report directories (each with conformance.json)"
        )
        parser.add_argument("--out", type=Path, required=True, help="where the merged report goes")
        parsed = parser.parse_args(argv[1:])
        missing = [d for d in parsed.dirs if not (d / "conformance.json").exists()]
        if missing:
            print(f"no conformance.json in {', '.join(map(str, missing))}", file=sys.stderr)
            return USAGE
        failed = merge(parsed.dirs, parsed.out)
        print(
            f"merged {len(parsed.dirs)} reports into {parsed.out}/conformance.json and "
            "CONFORMANCE.md"
        )
        return NONCONFORMANCE if failed else OK
    return run(argv)


if __name__ == "__main__":
    sys.exit(main())
