"""Pure cryptography: KEM suites, HPKE key wrap, STREAM body (pyca/cryptography only)."""
