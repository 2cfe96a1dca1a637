"""The public surface: what `upbit_cancel` exports, and nothing private leaks."""

from __future__ import annotations

import upbit_cancel
import upbit_cancel.testing


def test_every_public_name_is_exported_and_documented() -> None:
    """`__all__` lists exactly the public names, each with a docstring."""
    public = {name for name in dir(upbit_cancel) if not name.startswith("_")}
    # `testing` is the subpackage itself, imported by this module.
    assert set(upbit_cancel.__all__) == public - {"annotations", "testing"}
    for name in upbit_cancel.__all__:
        value = getattr(upbit_cancel, name)
        if callable(value):
            assert value.__doc__, f"{name} has no docstring"


def test_exports_are_sorted() -> None:
    """Both packages keep `__all__` sorted, constants first."""
    for module in (upbit_cancel, upbit_cancel.testing):
        constants = [name for name in module.__all__ if name.isupper()]
        others = [name for name in module.__all__ if not name.isupper()]
        assert module.__all__ == sorted(constants) + sorted(others)


def test_errors_share_one_root() -> None:
    """Every exported exception derives from UpbitError."""
    errors = [
        getattr(upbit_cancel, name)
        for name in upbit_cancel.__all__
        if isinstance(getattr(upbit_cancel, name), type)
        and issubclass(getattr(upbit_cancel, name), BaseException)
    ]
    assert len(errors) > 10
    assert all(issubclass(error, upbit_cancel.UpbitError) for error in errors)
