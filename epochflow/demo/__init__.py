"""`epochflow demo` (`make demo`): the built-in dataset through a fresh embedded stack."""
