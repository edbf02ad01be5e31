"""Execute the notebooks: in place at their own (full) settings, or with parameters overridden.

    python notebooks/execute.py                          # every notebook, in place (make notebooks)
    python notebooks/execute.py notebooks/01_train_to_chip.ipynb --set lava_limit=2 -o runs/notebooks

Each notebook has one code cell tagged ``parameters``; ``--set`` adds a cell tagged
``injected-parameters`` after it (papermill's convention), so a run on small settings executes
the same cells. The kernel is this Python (``sys.executable``, the project's virtual
environment), whatever kernels the machine has installed; cells run with the notebook's own
folder as working directory, as in Jupyter.
"""
from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import nbformat
from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent
PARAMETERS, INJECTED = "parameters", "injected-parameters"


class ThisPython(KernelSpecManager):
    """Every kernel name resolves to an IPython kernel on the running interpreter."""

    def get_kernel_spec(self, kernel_name: str) -> KernelSpec:
        return KernelSpec(argv=[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                          display_name="Python 3 (ipykernel)", language="python", resource_dir=str(HERE))


def notebooks() -> list[Path]:
    return sorted(HERE.glob("[0-9]*.ipynb"))


def _tags(cell: Mapping[str, Any]) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def parameter_names(nb: nbformat.NotebookNode) -> set[str]:
    cells = [c for c in nb.cells if PARAMETERS in _tags(c)]
    if len(cells) != 1 or cells[0].cell_type != "code":
        raise ValueError(f"a notebook needs exactly one code cell tagged {PARAMETERS!r}")
    return {t.id for node in ast.walk(ast.parse(cells[0].source)) if isinstance(node, ast.Assign)
            for t in node.targets if isinstance(t, ast.Name)}


def inject(nb: nbformat.NotebookNode, params: Mapping[str, Any]) -> nbformat.NotebookNode:
    """Copy of ``nb`` with ``params`` assigned in a cell right after its parameters cell."""
    unknown = set(params) - parameter_names(nb)
    if unknown:
        raise ValueError(f"not parameters of this notebook: {', '.join(sorted(unknown))}")
    nb = nbformat.from_dict(nb)
    nb.cells = [c for c in nb.cells if INJECTED not in _tags(c)]
    if params:
        at = next(i for i, c in enumerate(nb.cells) if PARAMETERS in _tags(c)) + 1
        source = "# Parameters injected by notebooks/execute.py\n" + "".join(
            f"{name} = {value!r}\n" for name, value in params.items())
        nb.cells.insert(at, nbformat.v4.new_code_cell(source, metadata={"tags": [INJECTED]}))
    return nb


def execute(path: str | Path, params: Mapping[str, Any] | None = None, output: str | Path | None = None,
            timeout: int | None = None) -> nbformat.NotebookNode:
    """Run every cell of the notebook at ``path`` (``params`` injected) and write the executed
    copy to ``output`` (default: in place). A failing cell raises ``CellExecutionError``."""
    path = Path(path)
    nb = inject(nbformat.read(path, as_version=4), params or {})
    km = AsyncKernelManager(kernel_spec_manager=ThisPython(), kernel_name="python3")
    client = NotebookClient(nb, km=km, timeout=timeout, record_timing=False,
                            resources={"metadata": {"path": str(path.parent)}})
    client.execute()
    nbformat.write(nb, Path(output) if output else path)
    return nb


def _value(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("notebooks", nargs="*", type=Path, help="default: every notebooks/NN_*.ipynb")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="override a parameter (a Python literal, else a string)")
    p.add_argument("-o", "--output", type=Path, help="directory for the executed copies (default: in place)")
    p.add_argument("--timeout", type=int, help="seconds per cell (default: none)")
    args = p.parse_args(argv)
    params = dict(item.split("=", 1) for item in args.set if "=" in item)
    if len(params) != len(args.set):
        p.error("--set takes NAME=VALUE")
    for path in args.notebooks or notebooks():
        out = args.output / path.name if args.output else None
        if out:
            out.parent.mkdir(parents=True, exist_ok=True)
        print(f"executing {path.name}", file=sys.stderr, flush=True)
        execute(path, {k: _value(v) for k, v in params.items()}, out, args.timeout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
