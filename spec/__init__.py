"""The spec: every component's contract as a record (registry.py), with its strategies and tolerance
policy.

SPEC_VERSION is the spec's own semantic version: a changed convention or bound is a new minor
version (a new major one when a verdict that passed may now fail for the same library), a new
component or property a new minor one, a fix that changes no verdict a patch. Every report records
it; docs/ERRATA.md logs each correction of the spec or the reference with its reason.
"""

SPEC_VERSION = "1.9.0"
