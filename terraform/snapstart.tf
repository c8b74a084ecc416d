# Lambda SnapStart (issue 15; docs/OPERATIONS.md, "SnapStart"): a switch, off by default.
# When on, the functions below publish a version on every code change, restore from its
# snapshot, and are called through the alias `live` (the ingest state machine uses the alias
# ARN: an unqualified ARN runs $LATEST, which never uses SnapStart).
#
# Only functions that generate no keys, nonces or HPKE encapsulations are listed: OpenSSL's
# generator state is inside the snapshot, and tests/unit/test_fork_restore.py shows only
# that a fork() reseeds it, not that a restore does. encrypt, the rotation functions, admin
# and the pool's refill stay off; so do the functions users invoke by name (retrieve,
# documents, admin) and the scheduled or one-off ones (audit_verify, migrate).

variable "lambda_snapstart" {
  description = "Turn on Lambda SnapStart (published versions, alias `live`) for the ingest steps that use no randomness (docs/OPERATIONS.md, \"SnapStart\"). Not on the local stack."
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
