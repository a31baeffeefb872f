"""Every public function of the custom Salt modules shows how to call it.

Execution modules: a ``CLI Example:`` whose bash block calls the function by its Salt name
(``salt TARGET <virtualname>.<function> ...``); runners the same with ``salt-run``. States: an
``SLS Example:`` whose YAML block parses and uses the state by its Salt name
(``<virtualname>.<function>``). The functions are
read from the source (top-level ``def`` not starting with ``_``), so the modules need not load.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
LABEL = {"_modules": "CLI Example:", "_states": "SLS Example:", "_runners": "CLI Example:"}
LANGUAGE = {"_modules": "bash", "_states": "yaml", "_runners": "bash"}


def _functions(path: Path) -> tuple[str, list[tuple[str, str]]]:
    """The module's Salt name and its public functions with their docstrings."""
    tree = ast.parse(path.read_text())
    name = path.stem
    functions = []
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
            if any(isinstance(t, ast.Name) and t.id == "__virtualname__" for t in node.targets):
                name = node.value.value
        if isinstance(node, ast.FunctionDef) and not node.name.startswith("_"):
            functions.append((node.name, ast.get_docstring(node) or ""))
    return name, functions


def _salt_function_name(path: Path, function: str) -> str:
    """The name Salt calls ``function`` by: its ``__func_alias__`` entry (``list_`` for
    ``list``, which would shadow Python's builtin), else its own."""
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__func_alias__" for t in node.targets
        ):
            return ast.literal_eval(node.value).get(function, function)
    return function


def _example(kind: str, docstring: str) -> str | None:
    """The code block that follows the example label, dedented, or None."""
    label = docstring.find(LABEL[kind])
    if label < 0:
        return None
    match = re.compile(
        rf"\A\s*\.\. code-block:: {LANGUAGE[kind]}\n\n((?:[ \t]+\S.*\n|[ \t]*\n)+)"
    ).match(docstring[label + len(LABEL[kind]) :] + "\n")
    if not match:
        return None
    lines = match.group(1).rstrip().splitlines()
    indent = min(len(line) - len(line.lstrip()) for line in lines if line.strip())
    return "\n".join(line[indent:] for line in lines)


CASES = [
    pytest.param(kind, path, function, id=f"{kind}/{path.stem}.{function}")
    for kind in LABEL
    for path in sorted((REPO / kind).glob("*.py"))
    for function, _ in _functions(path)[1]
]


def test_every_custom_module_has_public_functions():
    # Guards the walk itself: an empty parametrisation would pass without checking anything.
    assert {path.stem for kind, path, _ in (c.values for c in CASES)} >= {"ipvs", "ipvs_service"}


@pytest.mark.parametrize("kind,path,function", CASES)
def test_public_function_has_an_example(kind, path, function):
    salt_name, functions = _functions(path)
    docstring = dict(functions)[function]
    example = _example(kind, docstring)
    where = f"{path.relative_to(REPO)}: {function}"
    assert example is not None, f"{where}: no '{LABEL[kind]}' with a {LANGUAGE[kind]} code block"
    call = f"{salt_name}.{_salt_function_name(path, function)}"
    if kind == "_modules":
        assert re.search(rf"^salt(-call)?\s+.*\b{re.escape(call)}\b", example, re.M), (
            f"{where}: the CLI example does not call {call}:\n{example}"
        )
        return
    if kind == "_runners":
        assert re.search(rf"^salt-run\s+{re.escape(call)}\b", example, re.M), (
            f"{where}: the CLI example does not run {call}:\n{example}"
        )
        return
    # SLS is Jinja, then YAML: a Jinja expression stands in for a value here.
    sls = yaml.safe_load(re.sub(r"\{\{.*?\}\}", "JINJA", example))
    assert isinstance(sls, dict), f"{where}: the SLS example is not a mapping of state ids"
    used = [key for body in sls.values() if isinstance(body, dict) for key in body]
    assert call in used, f"{where}: the SLS example does not use {call}:\n{example}"
