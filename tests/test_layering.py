"""bpr is the Qt-free library: it never imports PySide6 or app (napari's and Anki's rule)."""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_import_contract_holds():
    """import-linter's contract in pyproject.toml: bpr -> PySide6/app is forbidden."""
    lint_imports = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run([str(lint_imports), "--no-cache", str(ROOT / "pyproject.toml")], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "KEPT" in result.stdout


def test_every_bpr_module_imports_with_qt_unavailable():
    """Import all of bpr in a process where importing PySide6 or app fails."""
    modules = sorted(
        ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for p in (ROOT / "bpr").rglob("*.py"))
    code = (
        "import sys, importlib\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('PySide6', 'app', 'shiboken6'):\n"
        "            raise ImportError('blocked: ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "assert not any(m.split('.')[0] in ('PySide6', 'app') for m in sys.modules)\n"
        "print('ok', len(sys.modules))\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1].startswith("ok")  # ultralytics may print first


QT = ("PySide6", "PyQt5", "PyQt6", "PySide2", "shiboken6", "app")


def test_no_bpr_module_reaches_qt_at_run_time():
    """The import test above sees only what runs while modules import; a call such as
    ``importlib.import_module("PySide6.QtCore")`` or ``__import__("app")`` inside a function is found here,
    in the source, as is any import statement of Qt or the app, wherever it stands."""
    found = []
    for path in sorted((ROOT / "bpr").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            elif isinstance(node, ast.Call):
                function = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
                if function in ("import_module", "__import__", "find_spec", "find_module"):
                    names = [arg.value for arg in node.args[:1] if isinstance(arg, ast.Constant)]
                    if node.args and not isinstance(node.args[0], ast.Constant):
                        found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {function} of a computed name")
            found += [f"{path.relative_to(ROOT)}:{node.lineno}: {name}" for name in names
                      if isinstance(name, str) and name.split(".")[0] in QT]
    assert found == []
