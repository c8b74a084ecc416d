# The ingest workflow (statemachines/ingest.asl.json), Standard type: exactly-once state
# transitions, a year of history, and the audit trail an auditor expects.

locals {
  ingest_functions = [for k in keys(local.core_functions) : k if k != "retrieve"]
  ingest_definition = templatefile("${path.module}/../statemachines/ingest.asl.json", {
    for k in local.ingest_functions : "${k}_function_arn" => aws_lambda_function.this[k].arn
  })
}

resource "aws_cloudwatch_log_group" "ingest" {
  name              = "/aws/vendedlogs/states/${local.name}-ingest"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.data.arn
}

data "aws_iam_policy_document" "states_assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["states.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_iam_role" "ingest" {
  name               = "${local.name}-ingest-${local.region}"
  description        = "Execution role of the ${local.name}-ingest state machine"
  assume_role_policy = data.aws_iam_policy_document.states_assume.json
}

# Logging and tracing for every state machine (ingest, rotate-keys): one document, merged into
# each workflow's own policy. CloudWatch Logs vended delivery and X-Ray take no resource-level
# permissions (AWS documents "*").
data "aws_iam_policy_document" "state_machine_observability" {
  statement {
    sid = "VendedLogDelivery"
    actions = [
      "logs:CreateLogDelivery",
      "logs:GetLogDelivery",
      "logs:UpdateLogDelivery",
      "logs:DeleteLogDelivery",
      "logs:ListLogDeliveries",
      "logs:PutResourcePolicy",
      "logs:DescribeResourcePolicies",
      "logs:DescribeLogGroups",
    ]
    resources = ["*"]
  }

  dynamic "statement" {
    for_each = var.enable_xray ? [1] : []

    content {
      sid       = "XRayTraces"
      actions   = ["xray:PutTraceSegments", "xray:PutTelemetryRecords", "xray:GetSamplingRules", "xray:GetSamplingTargets"]
      resources = ["*"]
    }
  }
}

data "aws_iam_policy_document" "ingest" {
  source_policy_documents = [data.aws_iam_policy_document.state_machine_observability.json]

  statement {
    sid       = "InvokeIngestSteps"
    actions   = ["lambda:InvokeFunction"]
    resources = flatten([for k in local.ingest_functions : [aws_lambda_function.this[k].arn, "${aws_lambda_function.this[k].arn}:*"]])
  }
}

resource "aws_iam_role_policy" "ingest" {
  #checkov:skip=CKV_AWS_290:Log delivery and X-Ray actions support no resource-level permissions; every other action names exact ARNs.
  #checkov:skip=CKV_AWS_355:Same: the "*" resources are the log delivery and X-Ray actions, which accept nothing else.
  name   = "pqfile-ingest"
  role   = aws_iam_role.ingest.id
  policy = data.aws_iam_policy_document.ingest.json
}

resource "aws_sfn_state_machine" "ingest" {
  name       = "${local.name}-ingest"
  type       = "STANDARD"
  role_arn   = aws_iam_role.ingest.arn
  definition = local.ingest_definition

  logging_configuration {
    log_destination        = "${aws_cloudwatch_log_group.ingest.arn}:*"
    include_execution_data = true
    level                  = "ALL"
  }

  tracing_configuration {
    enabled = var.enable_xray
  }

  depends_on = [aws_iam_role_policy.ingest]
}
