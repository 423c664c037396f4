"""The layering stays visible: no import cycles between the project's modules, and library modules
never reach up into the `tasks` registrations (only entry points do).

The import graph is read with `ast` from slam_jax/ and tasks/ (module-level and function-level
imports alike, since a deferred import is still a dependency). An edge goes to the most specific
project module an import names (`from slam_jax.models import encoder` -> slam_jax.models.encoder);
importing a submodule's parent package implicitly is not an edge, and self-imports are ignored.
"""

import ast
import os
from typing import Dict, List, Optional, Set

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("slam_jax", "tasks")
# Library modules allowed to import `tasks`, besides entry points (modules with a
# `if __name__ == "__main__":` block, and __main__.py): train.py parses gin for every entry point
# that trains, and gin names the registered tasks.
TASKS_IMPORT_ALLOWED = {"slam_jax.train"}


def _module_name(path: str, root: str) -> str:
  rel = os.path.relpath(path, root)[:-len(".py")].split(os.sep)
  if rel[-1] == "__init__":
    rel = rel[:-1]
  return ".".join(rel)


def _sources(root: str = ROOT) -> Dict[str, str]:
  """Module name -> file path for every .py file of the project's packages."""
  out = {}
  for package in PACKAGES:
    for dirpath, _, files in os.walk(os.path.join(root, package)):
      for name in files:
        if name.endswith(".py"):
          path = os.path.join(dirpath, name)
          out[_module_name(path, root)] = path
  return out


def _is_package(module: str, sources: Dict[str, str]) -> bool:
  return sources[module].endswith("__init__.py")


def _resolve(name: str, modules: Set[str]) -> Optional[str]:
  """The longest prefix of the dotted `name` that is a project module, or None."""
  parts = name.split(".")
  for end in range(len(parts), 0, -1):
    candidate = ".".join(parts[:end])
    if candidate in modules:
      return candidate
  return None


def imports_of(module: str, sources: Dict[str, str]) -> Set[str]:
  """Project modules that `module` imports anywhere in its file (self-imports dropped)."""
  tree = ast.parse(open(sources[module]).read(), sources[module])
  modules = set(sources)
  package = module if _is_package(module, sources) else module.rpartition(".")[0]
  targets = set()
  for node in ast.walk(tree):
    names = []
    if isinstance(node, ast.Import):
      names = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:
        anchor = package.split(".")
        anchor = anchor[:len(anchor) - (node.level - 1)]
        base = ".".join(anchor + ([base] if base else []))
      # `from a import b` imports the module a.b when there is one, else the names of a.
      names = [f"{base}.{alias.name}" for alias in node.names]
    for name in names:
      target = _resolve(name, modules)
      if target is not None and target != module:
        targets.add(target)
  return targets


def import_graph(root: str = ROOT) -> Dict[str, Set[str]]:
  sources = _sources(root)
  return {m: imports_of(m, sources) for m in sources}


def find_cycle(graph: Dict[str, Set[str]]) -> Optional[List[str]]:
  """One import cycle as [a, b, ..., a], or None (iterative DFS with colours)."""
  state = {m: 0 for m in graph}  # 0 unvisited, 1 on the stack, 2 done.
  for start in sorted(graph):
    if state[start]:
      continue
    stack = [(start, iter(sorted(graph[start])))]
    path = [start]
    state[start] = 1
    while stack:
      node, children = stack[-1]
      child = next(children, None)
      if child is None:
        state[node] = 2
        stack.pop()
        path.pop()
      elif state.get(child) == 1:
        return path[path.index(child):] + [child]
      elif state.get(child) == 0:
        state[child] = 1
        path.append(child)
        stack.append((child, iter(sorted(graph[child]))))
  return None


def is_entry_point(path: str) -> bool:
  if os.path.basename(path) == "__main__.py":
    return True
  for node in ast.parse(open(path).read(), path).body:
    if (isinstance(node, ast.If) and isinstance(node.test, ast.Compare)
        and isinstance(node.test.left, ast.Name) and node.test.left.id == "__name__"
        and any(isinstance(c, ast.Constant) and c.value == "__main__"
                for c in node.test.comparators)):
      return True
  return False


def upward_tasks_imports(root: str = ROOT) -> List[str]:
  """Library modules of slam_jax/ that import the `tasks` package (entry points excluded)."""
  sources = _sources(root)
  graph = import_graph(root)
  bad = []
  for module, targets in sorted(graph.items()):
    if not module.startswith("slam_jax") or module in TASKS_IMPORT_ALLOWED:
      continue
    if is_entry_point(sources[module]):
      continue
    reached = sorted(t for t in targets if t == "tasks" or t.startswith("tasks."))
    if reached:
      bad.append(f"{sources[module]} imports {', '.join(reached)}")
  return bad


def test_no_import_cycles():
  cycle = find_cycle(import_graph())
  assert cycle is None, (
      "import cycle: " + " -> ".join(cycle) + ". Move the shared names into a module both can "
      "import (as slam_jax/models/config.py does for EncoderConfig), or import at the entry point.")


def test_library_modules_do_not_import_tasks():
  bad = upward_tasks_imports()
  assert not bad, (
      "library modules import the top-level `tasks` registrations: " + "; ".join(bad) + ". Only "
      "entry points (an `if __name__ == '__main__':` block) and slam_jax/train.py may; take the "
      "task name as an argument instead.")


def test_the_walk_sees_known_edges_and_catches_a_cycle(tmp_path):
  graph = import_graph()
  # Module-level, function-level and relative imports all count.
  assert "slam_jax.models.config" in graph["slam_jax.models.conformer"]
  assert "tasks" in graph["slam_jax.train"]  # Inside parse_gin.
  assert "slam_jax.data.demo.corpus" in graph["slam_jax.data.corpus"]
  # A re-added circle (encoder <-> conformer) and an upward import are found in a copy.
  for package in PACKAGES:
    for dirpath, _, files in os.walk(os.path.join(ROOT, package)):
      for name in files:
        if name.endswith(".py"):
          src = os.path.join(dirpath, name)
          dst = tmp_path / os.path.relpath(src, ROOT)
          dst.parent.mkdir(parents=True, exist_ok=True)
          text = open(src).read()
          if name == "conformer.py" and dirpath.endswith("models"):
            text += "\n\ndef _late():\n  from slam_jax.models import encoder  # noqa\n"
          if name == "pipeline.py" and dirpath.endswith("data"):
            text += "\n\ndef _up():\n  from tasks import demo  # noqa\n"
          dst.write_text(text)
  cycle = find_cycle(import_graph(str(tmp_path)))
  assert cycle is not None and {"slam_jax.models.conformer", "slam_jax.models.encoder"} <= set(
      cycle), cycle
  assert any("pipeline.py imports tasks.demo" in b for b in upward_tasks_imports(str(tmp_path)))
