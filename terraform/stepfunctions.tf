# The workflows, both Standard (exactly-once state transitions, a year of history, the audit
# trail an auditor expects): `ingest` (statemachines/ingest.asl.json) and `rotate-keys`
# (statemachines/rotate-keys.asl.json, rotation.tf). Each has its own execution role that may
# invoke only its own steps, and logs ALL to its own KMS-encrypted log group.

locals {
  ingest_functions = [for k in keys(local.core_functions) : k if k != "retrieve"]

  # Per workflow: its ASL file, the functions it invokes (template placeholder => function
  # key) and the statement id of that grant.
  workflows = {
    ingest = {
      asl        = "${path.module}/../statemachines/ingest.asl.json"
      steps      = { for k in local.ingest_functions : "${k}_function_arn" => k }
      invoke_sid = "InvokeIngestSteps"
      statements = []
    }
    rotate-keys = {
      asl        = "${path.module}/../statemachines/rotate-keys.asl.json"
      steps      = { for k in keys(local.rotation_functions) : "${trimprefix(k, "rotate_")}_function_arn" => k }
      invoke_sid = "InvokeRotationSteps"
      statements = local.rotation_workflow_statements
    }
  }
}

resource "aws_iam_role" "workflow" {
  for_each = local.workflows

  name               = "${local.name}-${each.key}-${local.region}"
  description        = "Execution role of the ${local.name}-${each.key} state machine"
  assume_role_policy = data.aws_iam_policy_document.assume_role["states"].json
}

# CloudWatch Logs vended delivery and X-Ray take no resource-level permissions (AWS documents
# "*"); invoking names the workflow's own functions (and their versions) only.
data "aws_iam_policy_document" "workflow" {
  for_each = local.workflows

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

  statement {
    sid       = each.value.invoke_sid
    actions   = ["lambda:InvokeFunction"]
    resources = flatten([for k in values(each.value.steps) : [aws_lambda_function.this[k].arn, "${aws_lambda_function.this[k].arn}:*"]])
  }

  # A workflow's own further rights (rotate-keys: its distributed Map, rotation.tf).
  dynamic "statement" {
    for_each = each.value.statements

    content {
      sid       = statement.value.sid
      actions   = statement.value.actions
      resources = statement.value.resources

      dynamic "condition" {
        for_each = statement.value.condition == null ? [] : [statement.value.condition]

        content {
          test     = condition.value.test
          variable = condition.value.variable
          values   = condition.value.values
        }
      }
    }
  }
}

resource "aws_iam_role_policy" "workflow" {
  #checkov:skip=CKV_AWS_290:Log delivery and X-Ray actions support no resource-level permissions; every other action names exact ARNs.
  #checkov:skip=CKV_AWS_355:Same: the "*" resources are the log delivery and X-Ray actions, which accept nothing else.
  for_each = local.workflows

  name   = "pqfile-${each.key}"
  role   = aws_iam_role.workflow[each.key].id
  policy = data.aws_iam_policy_document.workflow[each.key].json
}

resource "aws_sfn_state_machine" "workflow" {
  for_each = local.workflows

  name     = each.key == "rotate-keys" ? local.rotate_keys_name : "${local.name}-${each.key}"
  type     = "STANDARD"
  role_arn = aws_iam_role.workflow[each.key].arn
  definition = templatefile(each.value.asl, {
    for placeholder, k in each.value.steps : placeholder => local.function_call_arns[k]
  })

  logging_configuration {
    log_destination        = "${module.log_groups["workflow"].arns[each.key]}:*"
    include_execution_data = true
    level                  = "ALL"
  }

  tracing_configuration {
    enabled = var.enable_xray
  }

  depends_on = [aws_iam_role_policy.workflow]
}
