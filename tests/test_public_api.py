"""The packages' public names: spektron.models, spektron.data, spektron.evaluation."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

PACKAGES = ("spektron.models", "spektron.data", "spektron.evaluation")


@pytest.mark.parametrize("package", PACKAGES)
def test_every_public_name_is_the_object_of_its_module(package):
    pkg = importlib.import_module(package)
    assert sorted(pkg.__all__) == sorted(pkg._EXPORTS) and pkg.__all__
    for name in pkg.__all__:
        path = pkg._EXPORTS[name]  # relative to the package, or absolute (spektron.…)
        module = importlib.import_module(
            path if path.startswith("spektron.") else f"{package}.{path}"
        )
        assert getattr(pkg, name) is getattr(module, name)
    assert set(pkg.__all__) <= set(dir(pkg)) and "__doc__" in dir(pkg)
    with pytest.raises(AttributeError, match="no attribute 'not_a_name'"):
        pkg.not_a_name  # noqa: B018


def test_names_users_import():
    from spektron.data import open_store
    from spektron.evaluation import DirectStandardization, PiecewiseDirectStandardization
    from spektron.models import Spektron, SpektronConfig, build_backbone, size_backbone

    assert callable(open_store) and callable(build_backbone) and callable(size_backbone)
    assert Spektron.__name__ == "Spektron" and SpektronConfig.__name__ == "SpektronConfig"
    assert hasattr(DirectStandardization, "fit") and hasattr(PiecewiseDirectStandardization, "fit")


def test_importing_one_module_does_not_import_the_whole_package():
    code = (
        "import sys, spektron.data.store, spektron.models.registry; "
        "print(sorted(m for m in sys.modules if m in "
        "('spektron.data.generate', 'spektron.models.spektron', 'spektron.data.nir')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
