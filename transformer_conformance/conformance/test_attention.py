"""Conformance of the attention family (softmax, attention weights, scaled dot-product and
multi-head attention): spec/ records of family "attention".

Generated from the records: the plugin parametrises these over adapter x component x property x
variant x dtype (or bad input); transformer_conformance/conformance/tests.py holds the test bodies.
"""

from transformer_conformance.conformance.tests import (
    test_gradient_property,
    test_kernel_property,
    test_property,
    test_refuses_bad_input,
)

FAMILY = "attention"
__all__ = [
    "test_gradient_property",
    "test_kernel_property",
    "test_property",
    "test_refuses_bad_input",
]
