# Scheduled audit verification: pqfile.handlers.audit_verify recomputes the audit hash chain
# as the read-only pqfile_auditor database role and publishes AuditVerificationFailures
# (0 or 1), the metric of the audit-verification-failed alarm (monitoring.tf).

locals {
  audit_functions = {
    audit_verify = {
      handler     = "pqfile.handlers.audit_verify.handler"
      description = "Verifies the audit hash chain (read-only) and publishes AuditVerificationFailures"
      seed_access = "none"
      attestation = "none"
    }
  }
}

# The schedule (enable_audit_verify_schedule) is in eventbridge.tf.
resource "aws_lambda_permission" "audit_verify_schedule" {
  count = var.enable_audit_verify_schedule ? 1 : 0

  statement_id  = "AllowAuditVerifySchedule"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.this["audit_verify"].function_name
  principal     = "events.amazonaws.com"
  source_arn    = aws_cloudwatch_event_rule.schedule["audit-verify"].arn
}
