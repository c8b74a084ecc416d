# Lambda SnapStart (issue 15; docs/OPERATIONS.md, "SnapStart"): a switch, off by default.
# When on, the functions below publish a version on every code change, restore from its
# snapshot, and are called through the alias `live` (the ingest state machine uses the alias
# ARN: an unqualified ARN runs $LATEST, which never uses SnapStart).
#
# Every environment restored from one snapshot resumes the same memory with the same pid,
# and OpenSSL notices a new process only by its pid. tests/unit/test_fork_restore.py models
# that (pid namespaces): two restores repeat pyca's HPKE encapsulations, while what comes
# from the kernel (os.urandom: data keys, salts, nonce prefixes, key seeds) differs. The
# handlers' after-restore hook (handlers/_runtime.reseed_after_restore) reseeds the
# runtime's OpenSSL (TLS) and `random`; nothing from Python reseeds the OpenSSL inside pyca.
#
# So only functions that draw nothing from pyca's generator are candidates: fetch,
# select_key, store, audit and record_failure (their randomness is TLS and the database
# login's nonce, both restore-safe with the hook). Never: encrypt (encapsulates to a pool
# key), rotate_rewrap (encapsulates), admin, retrieve (sealed retrieval encapsulates to the
# caller) - tests/terraform/test_snapstart_static.py keeps them out. The rest gain nothing:
# documents is invoked by name ($LATEST), the other rotation steps, shred, migrate,
# audit_verify and audit_digest run rarely.

variable "lambda_snapstart" {
  description = "Turn on Lambda SnapStart (published versions, alias `live`) for the ingest steps that draw no randomness from pyca (docs/OPERATIONS.md, \"SnapStart\"). Not on the local stack."
  type        = bool
  default     = false
}

locals {
  snapstart_candidates = ["fetch", "select_key", "store", "audit", "record_failure"]
  snapstart_functions  = var.lambda_snapstart && !local.is_local ? [for k in local.snapstart_candidates : k if contains(keys(local.functions), k)] : []

  # What callers (the state machines) invoke: the alias where SnapStart is on.
  function_call_arns = {
    for k in keys(local.functions) : k => (
      contains(local.snapstart_functions, k) ? aws_lambda_alias.live[k].arn : aws_lambda_function.this[k].arn
    )
  }
}

resource "aws_lambda_alias" "live" {
  for_each = toset(local.snapstart_functions)

  name             = "live"
  description      = "The published SnapStart version the workflows call"
  function_name    = aws_lambda_function.this[each.key].function_name
  function_version = aws_lambda_function.this[each.key].version
}
