# S3 "Object Created" under uploads/ in the uploads bucket starts one ingest execution;
# schedules start rotate-keys and the audit verification. The service's own completion
# events (docs/CONTRACTS.md, "Completion events") go to the default bus, put by the
# functions of local.event_functions only (iam.tf).

locals {
  # Who announces what: store (Document Encrypted), record_failure (Document Failed),
  # rotate_finish and shred (Key Revoked: a pending revocation or shred completed), admin
  # (Key Revoked: `pqfile keys revoke --now --stack`).
  event_functions = toset(["store", "record_failure", "rotate_finish", "shred", "admin"])
  event_bus_arn   = "arn:${local.partition}:events:${local.region}:${local.account_id}:event-bus/default"
  event_types     = ["PQFile Document Encrypted", "PQFile Document Failed", "PQFile Key Revoked"]
}

resource "aws_cloudwatch_event_rule" "upload_created" {
  name        = "${local.name}-upload-created"
  description = "New objects under ${local.uploads_prefix} start the ingest workflow"

  event_pattern = jsonencode({
    source        = ["aws.s3"]
    "detail-type" = ["Object Created"]
    detail = {
      bucket = { name = [aws_s3_bucket.this["uploads"].id] }
      object = { key = [{ prefix = local.uploads_prefix }] }
    }
  })
}

resource "aws_cloudwatch_event_target" "ingest" {
  rule     = aws_cloudwatch_event_rule.upload_created.name
  arn      = aws_sfn_state_machine.workflow["ingest"].arn
  role_arn = aws_iam_role.service["events"].arn

  retry_policy {
    maximum_event_age_in_seconds = 86400
    maximum_retry_attempts       = 185
  }

  dead_letter_config {
    arn = aws_sqs_queue.failures["events"].arn
  }
}

# --- schedules ------------------------------------------------------------------------------

locals {
  # rotate-keys (rotation.tf) through its EventBridge role; audit_verify (audit_verify.tf)
  # directly, allowed by the function's resource policy.
  schedules = merge(
    var.enable_rotation_schedule ? {
      rotate-keys = {
        description = "Runs the rotate-keys workflow"
        expression  = var.rotation_schedule
        target      = aws_sfn_state_machine.workflow["rotate-keys"].arn
        role        = aws_iam_role.service["rotation_schedule"].arn
      }
    } : {},
    var.enable_audit_verify_schedule ? {
      audit-verify = {
        description = "Runs the audit chain verification"
        expression  = var.audit_verify_schedule
        target      = aws_lambda_function.this["audit_verify"].arn
        role        = null
      }
    } : {},
    var.enable_audit_digest_schedule ? {
      audit-digest = {
        description = "Signs an audit digest (audit_digests.tf)"
        expression  = var.audit_digest_schedule
        target      = aws_lambda_function.this[local.digest_function].arn
        role        = null
      }
    } : {},
  )
}

resource "aws_cloudwatch_event_rule" "schedule" {
  for_each = local.schedules

  name                = "${local.name}-${each.key}"
  description         = each.value.description
  schedule_expression = each.value.expression
}

resource "aws_cloudwatch_event_target" "schedule" {
  for_each = local.schedules

  rule     = aws_cloudwatch_event_rule.schedule[each.key].name
  arn      = each.value.target
  role_arn = each.value.role
  input    = jsonencode({})
}
