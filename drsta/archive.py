"""Loading a `.pt2` program so that nothing in the file can run code: the archive is checked, then loaded.

`torch.export.load` trusts its input. Besides tensors stored as raw bytes, an archive can make it run code in
five ways (torch 2.14, `torch/export/pt2_archive/_package.py`, `torch/_export/serde/serialize.py`,
`torch/export/_unlift.py`):
- weights or constants marked `use_pickle`, custom or opaque objects, and legacy `.pt` state files are
  unpickled by the full unpickler (`weights_only` off);
- sample inputs that fail `weights_only=True` are unpickled again by the full unpickler;
- the graph's symbolic shapes (`expr_str`) are parsed by `sympy.sympify`, which calls `eval`;
- `ExportedProgram.module()` compiles the archive's `guards_code` strings with `exec` into a check that runs
  on every call;
- a graph node's target names any `torch.*` or `operator.*` callable, called when the program runs.

`check_program` accepts only what `torch.export.save` writes for a drsta model: raw-byte tensors, sample
inputs that load with `weights_only=True`, shape expressions in SymPy's `srepr` form over an allow-list of
names, guards that compare input sizes with integers, ATen operators and integer arithmetic. Anything else is
refused with `UnsafeModelError` before torch sees the file.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

# Archive members, relative to the archive's root folder.
_ALLOWED_MEMBERS = re.compile(
    r"archive_format|archive_version|byteorder|\.data/version|\.data/serialization_id"
    r"|models/model\.json"
    r"|data/weights/model_weights_config\.json|data/weights/weight_\d+"
    r"|data/constants/model_constants_config\.json|data/constants/tensor_\d+"
    r"|data/sample_inputs/model\.pt"
)
_PAYLOAD_NAMES = {
    "data/weights/model_weights_config.json": "weight_",
    "data/constants/model_constants_config.json": "tensor_",
}
# Integer arithmetic on symbolic sizes; operator.attrgetter / methodcaller and friends are not in it.
_OPERATOR_TARGETS = {f"_operator.{name}" for name in (
    "add", "sub", "mul", "floordiv", "truediv", "mod", "neg", "pow", "eq", "ne", "lt", "le", "gt", "ge", "and_",
    "or_", "not_", "getitem")}  # fmt: skip
_ATEN_TARGET = re.compile(r"torch\.ops\.aten\.[A-Za-z0-9_]+\.[A-Za-z0-9_]+")
# SymPy srepr of a shape expression: Mul(Integer(4), Symbol('s7', positive=True, integer=True)).
_SYMPY_NAMES = {
    "Symbol", "Integer", "Rational", "Add", "Mul", "Pow", "Max", "Min", "Mod", "PythonMod", "FloorDiv",
    "CeilToInt", "FloorToInt", "CleanDiv", "IntTrueDiv", "TruncToInt", "ModularIndexing", "Abs", "floor",
    "ceiling", "Eq", "Ne", "Lt", "Le", "Gt", "Ge", "And", "Or", "Not", "true", "false", "True", "False", "oo",
    "positive", "negative", "nonnegative", "nonpositive", "integer", "real", "finite", "zero", "nonzero",
}  # fmt: skip
_EXPR_TOKEN = re.compile(r"\s*(?:(?P<name>[A-Za-z]+)|(?P<symbol>'[a-z]+\d+')|(?P<number>\d+)|(?P<punct>[(),=+\-*/]))")
_SYMBOL = re.compile(r"[a-z]+\d+")
_GUARD = re.compile(
    r"L\['[A-Za-z_][A-Za-z0-9_]*'\]\.size\(\)\[\d+\] (?:<=|>=|==|!=|<|>) "
    r"(?:-?\d+|L\['[A-Za-z_][A-Za-z0-9_]*'\]\.size\(\)\[\d+\])"
)
_TREESPEC_TYPES = {None, "builtins.tuple", "builtins.list", "builtins.dict"}
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class UnsafeModelError(ValueError):
    """A model file holds something that could run code when loaded (or is not a drsta program at all)."""


def load_program(source: str | Path | bytes, name: str | None = None) -> nn.Module:
    """Check a `.pt2` archive (a path or its bytes), then load it; call the result on clips.

    Args:
        source: the archive's path, or its bytes.
        name: how to name the archive in errors (default: its path, or "the model program").

    Raises:
        FileNotFoundError: no such file.
        UnsafeModelError: the archive could run code when loaded, or is not a `torch.export` program.
    """
    if isinstance(source, bytes):
        data, name = source, name or "the model program"
    else:
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"exported model {path} not found")
        data, name = path.read_bytes(), name or str(path)
    check_program(data, name)
    return torch.export.load(io.BytesIO(data)).module()


def check_program(data: bytes, name: str) -> None:
    """Raise UnsafeModelError, naming `name` and the reason, unless `data` is a plain `torch.export` archive."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise UnsafeModelError(f"{name}: not a .pt2 archive (not a zip file)") from None
    with archive:
        members = _members(archive, name)
        if members.get("archive_format") is None or archive.read(members["archive_format"]) != b"pt2":
            raise UnsafeModelError(f"{name}: not a torch.export archive of this torch version (no archive_format pt2)")
        for relative in members:
            if not _ALLOWED_MEMBERS.fullmatch(relative):
                raise UnsafeModelError(f"{name}: unexpected file {relative!r} in the archive (pickled objects, "
                                       "compiled code or legacy state files are refused)")  # fmt: skip
        if "models/model.json" not in members:
            raise UnsafeModelError(f"{name}: no models/model.json in the archive")
        for config, prefix in _PAYLOAD_NAMES.items():
            if config in members:
                _check_payload_config(_json(archive, members[config], name), prefix, f"{name}: {config}")
        if "data/sample_inputs/model.pt" in members:
            _check_weights_only(archive.read(members["data/sample_inputs/model.pt"]), name)
        _check_graph(_json(archive, members["models/model.json"], name), name)


def _members(archive: zipfile.ZipFile, name: str) -> dict[str, str]:
    """Member paths relative to the archive's single root folder -> their names in the zip."""
    members = {}
    for member in archive.namelist():
        if member.endswith("/"):
            continue
        root, _, relative = member.partition("/")
        if not root or not relative or ".." in member.split("/") or member.startswith("/"):
            raise UnsafeModelError(f"{name}: malformed archive member {member!r}")
        members[relative] = member
    roots = {member.partition("/")[0] for member in members.values()}
    if len(roots) != 1:
        raise UnsafeModelError(f"{name}: the archive has {len(roots)} root folders, expected one")
    return members


def _json(archive: zipfile.ZipFile, member: str, name: str) -> Any:
    try:
        return json.loads(archive.read(member))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UnsafeModelError(f"{name}: {member} is not valid JSON ({err})") from None


def _check_payload_config(config: Any, prefix: str, where: str) -> None:
    entries = config.get("config") if isinstance(config, dict) else None
    if not isinstance(entries, dict):
        raise UnsafeModelError(f"{where}: malformed payload config")
    for key, meta in entries.items():
        if not isinstance(meta, dict) or meta.get("use_pickle") is not False or meta.get("tensor_meta") is None:
            raise UnsafeModelError(f"{where}: {key!r} is stored as a pickle, not as raw tensor bytes")
        if not re.fullmatch(rf"{prefix}\d+", str(meta.get("path_name"))):
            raise UnsafeModelError(f"{where}: {key!r} points at {meta.get('path_name')!r}, not a raw tensor file")


def _check_weights_only(data: bytes, name: str) -> None:
    # torch would retry a failed weights_only load with the full unpickler: only a safe load may pass.
    try:
        torch.load(io.BytesIO(data), weights_only=True)
    except Exception as err:  # any failure of the safe unpickler means the file needs the unsafe one
        raise UnsafeModelError(f"{name}: the sample inputs are not plain tensors ({type(err).__name__})") from None


def _check_graph(program: Any, name: str) -> None:
    if not isinstance(program, dict):
        raise UnsafeModelError(f"{name}: models/model.json is not an exported program")
    for guard in program.get("guards_code") or []:
        if not isinstance(guard, str) or not _GUARD.fullmatch(guard):
            raise UnsafeModelError(f"{name}: input guard {guard!r} is not a size comparison (it would be executed)")
    for symbol in program.get("range_constraints") or {}:
        if not _SYMBOL.fullmatch(symbol):
            raise UnsafeModelError(f"{name}: shape symbol {symbol!r} is not a plain symbol name")
    for key, value in _items(program):
        if key == "expr_str":
            _check_expression(value, name)
        elif key == "target" and isinstance(value, str):
            if not (_ATEN_TARGET.fullmatch(value) or value in _OPERATOR_TARGETS):
                raise UnsafeModelError(f"{name}: the graph calls {value!r}; only ATen operators are accepted")
        elif key in ("in_spec", "out_spec") and value is not None:
            _check_treespec(value, name)
        elif key == "forward_arg_names" and not all(isinstance(a, str) and _IDENTIFIER.fullmatch(a) for a in value):
            raise UnsafeModelError(f"{name}: malformed argument names {value!r}")


def _items(node: Any) -> Iterator[tuple[str, Any]]:
    """Every (key, value) pair of a JSON document, depth first."""
    stack = [node]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for key, value in node.items():
                yield key, value
                stack.append(value)
        elif isinstance(node, list):
            stack.extend(node)


def _check_expression(expression: Any, name: str) -> None:
    """An `expr_str` may only use SymPy constructors from the allow-list (no attributes, strings or calls of
    anything else): it is passed to `sympy.sympify`, that is `eval`."""
    text = expression if isinstance(expression, str) else None
    position = 0
    while text is not None and position < len(text.rstrip()):
        token = _EXPR_TOKEN.match(text, position)
        if token is None or (token["name"] is not None and token["name"] not in _SYMPY_NAMES):
            text = None
            break
        position = token.end()
    if text is None:
        raise UnsafeModelError(f"{name}: shape expression {expression!r} is not a plain SymPy expression")


def _check_treespec(spec: Any, name: str) -> None:
    try:
        _, root = json.loads(spec)
        stack = [root]
        while stack:
            node = stack.pop()
            if not isinstance(node, dict) or node.get("type") not in _TREESPEC_TYPES:
                raise UnsafeModelError(f"{name}: inputs/outputs of type {node!r} are not tensors, tuples or dicts")
            context = json.loads(node["context"]) if isinstance(node.get("context"), str) else None
            if context is not None and not all(isinstance(k, str) and _IDENTIFIER.fullmatch(k) for k in context):
                raise UnsafeModelError(f"{name}: malformed input/output names {context!r}")
            stack.extend(node.get("children_spec") or [])
    except (TypeError, ValueError) as err:
        if isinstance(err, UnsafeModelError):
            raise
        raise UnsafeModelError(f"{name}: malformed input/output spec {spec!r}") from None
