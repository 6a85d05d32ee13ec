"""Conformance of the stacks family (encoder and decoder layers and stacks, the key/value-cache
decoder): spec/ records of family "stacks".

Generated from the records: the plugin parametrises these over adapter x component x property x
variant x dtype (or bad input); transformer_conformance/conformance/tests.py holds the test bodies.
"""

from transformer_conformance.conformance.tests import (
    test_gradient_property,
    test_property,
    test_refuses_bad_input,
)

FAMILY = "stacks"
__all__ = ["test_gradient_property", "test_property", "test_refuses_bad_input"]
