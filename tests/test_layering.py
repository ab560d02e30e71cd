"""The package's layering, read from its own source: each concept in one module.

Parsed with ``ast`` (nothing is imported): the modules under ``normax/`` import one another
without a cycle, and none reaches into another's underscored names. A module may import the
public-in-module names of an underscored module (``from normax._base import Norm``), but not
``from normax._x import _private`` or ``normax._x._private``; and outside the module that defines
it, an underscored attribute is reached only through ``self``/``cls`` (a subclass using its base's
helpers). The module map in ``docs/design.md`` lists every module in a layer that imports only
from lower layers.
"""

import ast
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "normax"

#: Underscored names that are public API of the standard library (``typing.NamedTuple``).
NAMEDTUPLE_API = {"_replace", "_asdict", "_fields", "_make", "_field_defaults"}

#: Exceptions: ``(module, attribute) -> reason``. Keep it empty unless a reason is good.
ALLOWED: dict[tuple[str, str], str] = {}


def _modules() -> dict[str, ast.Module]:
  out = {}
  for path in sorted(PACKAGE.rglob("*.py")):
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    if parts[-1] == "__init__":
      parts = parts[:-1]
    out[".".join(parts)] = ast.parse(path.read_text(), filename=str(path))
  return out


MODULES = _modules()


def _absolute(module: str, node: ast.ImportFrom) -> str:
  """The absolute module name an ``ImportFrom`` names (relative imports resolved)."""
  if not node.level:
    return node.module or ""
  package = module.split(".")
  is_package = (PACKAGE.parent / pathlib.Path(*package) / "__init__.py").exists()
  base = package if is_package else package[:-1]
  base = base[: len(base) - (node.level - 1)]
  return ".".join(base + ([node.module] if node.module else []))


def _imports(module: str, tree: ast.Module):
  """``(imported module, [names imported from it], {local alias: module})`` per import."""
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      for alias in node.names:
        if alias.name in MODULES:
          local = alias.asname or alias.name
          yield alias.name, [], {local: alias.name}
    elif isinstance(node, ast.ImportFrom):
      source = _absolute(module, node)
      if source not in MODULES:
        continue
      names, aliases = [], {}
      for alias in node.names:
        sub = f"{source}.{alias.name}"
        if sub in MODULES:  # ``from normax import presets``: a module, not a name in one.
          aliases[alias.asname or alias.name] = sub
          yield sub, [], {}
        else:
          names.append(alias.name)
      yield source, names, aliases


def _graph() -> dict[str, set[str]]:
  graph = {name: set() for name in MODULES}
  for name, tree in MODULES.items():
    for target, _, _ in _imports(name, tree):
      if target != name:
        graph[name].add(target)
  # Importing ``normax.x`` runs ``normax/__init__.py`` first: a module of the package that
  # imported the package itself would close a cycle through it.
  return graph


def _defined_attributes(tree: ast.Module) -> set[str]:
  """Names a module defines: functions, classes, assigned names and assigned attributes."""
  out = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
      out.add(node.name)
    elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
      out.add(node.attr)
    elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
      out.add(node.id)
    elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
      out.add(node.target.id)
  return out


def _private(name: str) -> bool:
  return name.startswith("_") and not name.startswith("__")


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
  state: dict[str, int] = {}  # 1: on the current path, 2: done.
  cycles = []

  def visit(node, path):
    state[node] = 1
    for nxt in sorted(graph[node]):
      if state.get(nxt) == 1:
        cycles.append(path[path.index(nxt) :] + [nxt])
      elif nxt not in state:
        visit(nxt, path + [nxt])
    state[node] = 2

  for node in sorted(graph):
    if node not in state:
      visit(node, [node])
  return cycles


def _violations(name: str, tree: ast.Module) -> list[str]:
  found = []
  module_aliases = {}
  for source, names, aliases in _imports(name, tree):
    module_aliases.update(aliases)
    found += [f"{name}: from {source} import {n}" for n in names if _private(n)]
  own = _defined_attributes(tree)
  for node in ast.walk(tree):
    if not isinstance(node, ast.Attribute) or not _private(node.attr):
      continue
    base = node.value
    if isinstance(base, ast.Name) and base.id in module_aliases:
      where = f"module {module_aliases[base.id]}"
      found.append(f"{name}:{node.lineno}: {base.id}.{node.attr} ({where})")
    elif isinstance(base, ast.Name) and base.id in ("self", "cls"):
      continue
    elif isinstance(base, ast.Call) and ast.unparse(base.func) == "super":
      continue
    elif node.attr in own or node.attr in NAMEDTUPLE_API or (name, node.attr) in ALLOWED:
      continue
    else:
      found.append(f"{name}:{node.lineno}: {ast.unparse(node)}")
  return found


def test_the_package_is_parsed():
  assert {"normax", "normax._base", "normax._spectral", "normax.presets"} <= set(MODULES)


def test_the_import_graph_has_no_cycle():
  cycles = _cycles(_graph())
  assert not cycles, "Import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_no_module_imports_or_reaches_into_another_modules_private_names():
  found = [v for name, tree in MODULES.items() for v in _violations(name, tree)]
  assert not found, "Reaches into another module's private names:\n" + "\n".join(found)


def test_the_checks_see_a_violation():
  """The checks are not vacuous: they flag a planted private import, accesses and a cycle."""
  planted = ast.parse(
    "from normax._base import Norm, _zero_size_safe\n"
    "import normax._spectral as sp\n"
    "from normax import _sharding\n"
    "def f(norm, state):\n"
    "  return sp._x, _sharding._HOP, norm._as_matrices, state._replace(), self._y\n"
  )
  found = _violations("normax._planted", planted)
  assert len(found) == 4, found
  assert "_zero_size_safe" in found[0] and "sp._x" in found[1] and "_sharding._HOP" in found[2]
  assert "norm._as_matrices" in found[3]
  assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]


def _module_map() -> dict[str, int]:
  """Module -> layer, from the table in docs/design.md's module map."""
  doc = (ROOT / "docs" / "design.md").read_text()
  section = doc[doc.index("## 7. Module map") :]
  layers = {}
  for layer, cell in re.findall(r"^\| (\d+) \| (.*?) \|", section, re.MULTILINE):
    for stem in re.findall(r"`(\w+)\.py`", cell):
      layers[f"normax.{stem}"] = int(layer)
  return layers


def test_the_design_module_map_matches_the_imports():
  layers = _module_map()
  missing = sorted(set(MODULES) - set(layers) - {"normax"})
  assert not missing, f"Modules missing from docs/design.md's module map: {missing}"
  stale = sorted(set(layers) - set(MODULES))
  assert not stale, f"docs/design.md's module map lists modules that do not exist: {stale}"
  upward = [
    f"{a} (layer {layers[a]}) imports {b} (layer {layers[b]})"
    for a, targets in _graph().items()
    if a != "normax"
    for b in sorted(targets)
    if layers[b] >= layers[a]
  ]
  assert not upward, "Imports that do not go to a lower layer:\n" + "\n".join(upward)
