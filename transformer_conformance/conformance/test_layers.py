"""Conformance of the layers family (position-wise FFN, LayerNorm, Add & Norm, dropout): spec/
records of family "layers".

Generated from the records: the plugin parametrises these over adapter x component x property x
variant x dtype (or bad input); transformer_conformance/conformance/tests.py holds the test bodies.
"""

from transformer_conformance.conformance.tests import (
    test_gradient_property,
    test_property,
    test_refuses_bad_input,
)

FAMILY = "layers"
__all__ = ["test_gradient_property", "test_property", "test_refuses_bad_input"]
