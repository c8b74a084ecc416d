# The rotate-keys workflow (statemachines/rotate-keys.asl.json): keeps the key pool at its
# target, queues old or heavily used keys, rewraps their documents onto new keys (the data
# key is re-wrapped, the body is not re-encrypted) and expires them. Runs on a schedule
# (enable_rotation_schedule) or by hand.

locals {
  rotation_asl = "${path.module}/../statemachines/rotate-keys.asl.json"

  rotation_functions = {
    rotate_maintain = {
      handler     = "pqfile.handlers.rotate.maintain_handler"
      description = "Rotation step MaintainPool: refills the pool, queues keys due for rotation"
      seed_access = "encrypt"
    }
    rotate_plan = {
      handler     = "pqfile.handlers.rotate.plan_handler"
      description = "Rotation step PlanRewrap: lists the documents of a rotated key"
      seed_access = "none"
    }
    rotate_rewrap = {
      handler     = "pqfile.handlers.rotate.rewrap_handler"
      description = "Rotation step RewrapDocument: moves one document to a new key"
      seed_access = "decrypt"
    }
    rotate_finish = {
      handler     = "pqfile.handlers.rotate.finish_handler"
      description = "Rotation step FinishRotation: expires the rotated key"
      seed_access = "none"
    }
    rotate_failure = {
      handler     = "pqfile.handlers.rotate.failure_handler"
      description = "Rotation step RecordFailure: audits a failed rotation"
      seed_access = "none"
    }
  }
}

resource "aws_cloudwatch_log_group" "rotation" {
  name              = "/aws/vendedlogs/states/${local.name}-rotate-keys"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.data.arn
}

resource "aws_iam_role" "rotation" {
  name               = "${local.name}-rotate-keys-${local.region}"
  description        = "Execution role of the ${local.name}-rotate-keys state machine"
  assume_role_policy = data.aws_iam_policy_document.states_assume.json
}

data "aws_iam_policy_document" "rotation" {
  source_policy_documents = [data.aws_iam_policy_document.state_machine_observability.json]

  statement {
    sid       = "InvokeRotationSteps"
    actions   = ["lambda:InvokeFunction"]
    resources = flatten([for k in keys(local.rotation_functions) : [aws_lambda_function.this[k].arn, "${aws_lambda_function.this[k].arn}:*"]])
  }
}

resource "aws_iam_role_policy" "rotation" {
  #checkov:skip=CKV_AWS_290:Log delivery and X-Ray actions support no resource-level permissions; every other action names exact ARNs.
  #checkov:skip=CKV_AWS_355:Same: the "*" resources are the log delivery and X-Ray actions, which accept nothing else.
  name   = "pqfile-rotate-keys"
  role   = aws_iam_role.rotation.id
  policy = data.aws_iam_policy_document.rotation.json
}

resource "aws_sfn_state_machine" "rotation" {
  name     = "${local.name}-rotate-keys"
  type     = "STANDARD"
  role_arn = aws_iam_role.rotation.arn
  definition = templatefile(local.rotation_asl, {
    for k in keys(local.rotation_functions) : "${trimprefix(k, "rotate_")}_function_arn" => aws_lambda_function.this[k].arn
  })

  logging_configuration {
    log_destination        = "${aws_cloudwatch_log_group.rotation.arn}:*"
    include_execution_data = true
    level                  = "ALL"
  }

  tracing_configuration {
    enabled = var.enable_xray
  }

  depends_on = [aws_iam_role_policy.rotation]
}

# --- schedule ------------------------------------------------------------------------------

resource "aws_cloudwatch_event_rule" "rotation_schedule" {
  count = var.enable_rotation_schedule ? 1 : 0

  name                = "${local.name}-rotate-keys"
  description         = "Runs the rotate-keys workflow"
  schedule_expression = var.rotation_schedule
}

resource "aws_iam_role" "rotation_schedule" {
  count = var.enable_rotation_schedule ? 1 : 0

  name               = "${local.name}-rotate-schedule-${local.region}"
  description        = "EventBridge: starts the ${local.name}-rotate-keys state machine"
  assume_role_policy = data.aws_iam_policy_document.events_assume.json
}

data "aws_iam_policy_document" "rotation_schedule" {
  count = var.enable_rotation_schedule ? 1 : 0

  statement {
    sid       = "StartRotation"
    actions   = ["states:StartExecution"]
    resources = [aws_sfn_state_machine.rotation.arn]
  }
}

resource "aws_iam_role_policy" "rotation_schedule" {
  count = var.enable_rotation_schedule ? 1 : 0

  name   = "start-rotate-keys"
  role   = aws_iam_role.rotation_schedule[0].id
  policy = data.aws_iam_policy_document.rotation_schedule[0].json
}

resource "aws_cloudwatch_event_target" "rotation" {
  count = var.enable_rotation_schedule ? 1 : 0

  rule     = aws_cloudwatch_event_rule.rotation_schedule[0].name
  arn      = aws_sfn_state_machine.rotation.arn
  role_arn = aws_iam_role.rotation_schedule[0].arn
  input    = jsonencode({})
}

# Runbook: OPERATIONS.md "Alarm: rotation executions failed".
resource "aws_cloudwatch_metric_alarm" "rotation_failed" {
  count = var.create_alarms ? 1 : 0

  alarm_name          = "${local.name}-rotate-keys-executions-failed"
  alarm_description   = "rotate-keys executions failed, timed out or were aborted (runbook: docs/OPERATIONS.md#alarm-rotation-executions-failed)"
  comparison_operator = "GreaterThanOrEqualToThreshold"
  threshold           = 1
  evaluation_periods  = 1
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions

  metric_query {
    id          = "failures"
    expression  = "failed + timedout + aborted"
    label       = "Failed, timed out or aborted executions"
    return_data = true
  }

  dynamic "metric_query" {
    for_each = { failed = "ExecutionsFailed", timedout = "ExecutionsTimedOut", aborted = "ExecutionsAborted" }

    content {
      id = metric_query.key

      metric {
        namespace   = "AWS/States"
        metric_name = metric_query.value
        period      = 3600
        stat        = "Sum"
        dimensions  = { StateMachineArn = aws_sfn_state_machine.rotation.arn }
      }
    }
  }
}
