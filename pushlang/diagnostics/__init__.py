"""Diagnostics: the model, the catalogue of codes, and the renderers."""

from pushlang.diagnostics.codes import CODES, Code, lookup
from pushlang.diagnostics.model import Diagnostic, Severity
from pushlang.diagnostics.sink import Sink

__all__ = ["CODES", "Code", "Diagnostic", "Severity", "Sink", "lookup"]
