"""The package's folders are its layers: each imports only the layers below it, and the library
never imports the experiment configs (configs/)."""

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]
# bottom to top; a module may import its own layer and those before it
LAYERS = ("errors", "core", "networks", "data", "training", "config", "evaluation", "jobs")
ENTRY = "__main__"  # python -m consistency_jax, above every layer


def layer_of(module: str) -> int:
    """The layer index of a dotted module name inside consistency_jax."""
    parts = module.split(".")
    if len(parts) > 1 and parts[1] == ENTRY:
        return len(LAYERS)
    return LAYERS.index(parts[1]) if len(parts) > 1 else 0


def imports_of(path: pathlib.Path) -> list[str]:
    """Every module `path` imports (absolute imports, at any depth of the file)."""
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names += [node.module] + [f"{node.module}.{a.name}" for a in node.names]
    return names


def violations(package: pathlib.Path) -> list[str]:
    """'importer -> imported' for each import that goes up a layer or into configs/."""
    found = []
    for path in sorted(package.rglob("*.py")):
        module = ".".join(path.relative_to(package.parent).with_suffix("").parts)
        for name in imports_of(path):
            top = name.split(".")[0]
            if top == "configs":
                found.append(f"{module} -> {name}")
            elif top == "consistency_jax" and name.count(".") >= 1 and name.split(".")[1] in LAYERS:
                if layer_of(name) > layer_of(module):
                    found.append(f"{module} -> {name}")
    return found


def test_every_top_level_entry_of_the_package_is_a_layer():
    entries = {p.stem for p in (ROOT / "consistency_jax").iterdir() if p.name != "__init__.py"}
    entries -= {"__pycache__"}
    assert entries == {*LAYERS, ENTRY}


def test_no_module_imports_a_higher_layer_or_the_configs():
    assert violations(ROOT / "consistency_jax") == []


def test_the_check_finds_an_upward_import_and_an_import_of_the_configs(tmp_path):
    package = tmp_path / "consistency_jax"
    (package / "core").mkdir(parents=True)
    (package / "core" / "good.py").write_text("from consistency_jax.errors import ConfigError\n")
    (package / "core" / "bad.py").write_text(
        "import jax\n\ndef f():\n    from consistency_jax.training import state\n"
    )
    (package / "data").mkdir()
    (package / "data" / "worse.py").write_text("from configs import digits\n")
    assert violations(package) == [
        "consistency_jax.core.bad -> consistency_jax.training",
        "consistency_jax.core.bad -> consistency_jax.training.state",
        "consistency_jax.data.worse -> configs",
        "consistency_jax.data.worse -> configs.digits",
    ]
