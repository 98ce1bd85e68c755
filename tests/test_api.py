from __future__ import annotations

import grammar_engine


def test_all_lists_exactly_the_public_names() -> None:
    public = {name for name in vars(grammar_engine) if not name.startswith("_") and name != "annotations"}
    modules = {name for name, value in vars(grammar_engine).items() if type(value).__name__ == "module"}
    assert set(grammar_engine.__all__) - {"__version__"} == public - modules


def test_public_classes_show_the_package_name() -> None:
    assert grammar_engine.Grammar.__module__ == "grammar_engine"
    assert "grammar_engine.InstructionParseError" in repr(grammar_engine.InstructionParseError)


def test_errors_are_also_builtin_errors() -> None:
    assert issubclass(grammar_engine.GrammarLoadError, ValueError)
    assert issubclass(grammar_engine.InvalidArgument, TypeError)
    assert issubclass(grammar_engine.SamplingError, RuntimeError)
