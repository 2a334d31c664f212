"""carbontrack.operator: the kopf operator (installed from the top-level operator/ folder).

The product keeps its operator code in a folder called ``operator/``, but the
import name is ``carbontrack.operator``: a bare ``operator`` package would
collide with the standard library (docs/architecture.md, import names). One path still reaches
this file under the bare name: ``python -S`` started from the checkout root,
where the current directory precedes the standard library on ``sys.path``.
In that case this module steps aside and installs the real standard
``operator`` module in its place, so ``collections`` and ``functools`` keep
working. Only the low-level importlib machinery is used here because
``collections`` may be half-imported at this point.
"""

if __name__ == "operator":  # pragma: no cover - exercised in a subprocess by test_packaging
    import os as _os
    import sys as _sys
    from importlib._bootstrap import module_from_spec as _module_from_spec
    from importlib._bootstrap_external import spec_from_file_location as _spec_from_file

    _spec = _spec_from_file("operator", _os.path.join(_os.path.dirname(_os.__file__), "operator.py"))
    assert _spec is not None and _spec.loader is not None
    _stdlib_operator = _module_from_spec(_spec)
    _sys.modules["operator"] = _stdlib_operator
    _spec.loader.exec_module(_stdlib_operator)
