"""pushlang: campaigns-as-code for web push notifications."""

from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

__version__ = "0.1.0"


def compiled() -> bool:
    """Whether this install's runtime is the compiled one (built with mypyc, see DEVELOPERS.md) or pure
    Python: an extension module beside ``engine.py`` is the one imported. Nothing is imported to know."""
    runtime = Path(__file__).parent / "runtime"
    return any((runtime / f"engine{suffix}").exists() for suffix in EXTENSION_SUFFIXES)
