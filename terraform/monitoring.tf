# Alarms (docs/OPERATIONS.md has a runbook per alarm), all to one encrypted SNS topic.

locals {
  alarm_actions = var.create_alarms ? [aws_sns_topic.alarms[0].arn] : []
}

resource "aws_sns_topic" "alarms" {
  count = var.create_alarms ? 1 : 0

  name              = "${local.name}-alarms"
  kms_master_key_id = aws_kms_key.data.arn
}

data "aws_iam_policy_document" "alarms_topic" {
  count = var.create_alarms ? 1 : 0

  statement {
    sid       = "CloudWatchAlarmsPublish"
    actions   = ["sns:Publish"]
    resources = [aws_sns_topic.alarms[0].arn]

    principals {
      type        = "Service"
      identifiers = ["cloudwatch.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }

  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["sns:Publish"]
    resources = [aws_sns_topic.alarms[0].arn]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_sns_topic_policy" "alarms" {
  count = var.create_alarms ? 1 : 0

  arn    = aws_sns_topic.alarms[0].arn
  policy = data.aws_iam_policy_document.alarms_topic[0].json
}

resource "aws_sns_topic_subscription" "alarm_email" {
  for_each = var.create_alarms ? toset(var.alarm_email_addresses) : toset([])

  topic_arn = aws_sns_topic.alarms[0].arn
  protocol  = "email"
  endpoint  = each.value
}

# Runbook: OPERATIONS.md "Alarm: ingest executions failed".
resource "aws_cloudwatch_metric_alarm" "ingest_failed" {
  count = var.create_alarms ? 1 : 0

  alarm_name          = "${local.name}-ingest-executions-failed"
  alarm_description   = "Ingest executions failed, timed out or were aborted (runbook: docs/OPERATIONS.md#alarm-ingest-executions-failed)"
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
        period      = 300
        stat        = "Sum"
        dimensions  = { StateMachineArn = aws_sfn_state_machine.ingest.arn }
      }
    }
  }
}

# Runbook: OPERATIONS.md "Alarm: function errors".
resource "aws_cloudwatch_metric_alarm" "function_errors" {
  for_each = var.create_alarms ? local.functions : {}

  alarm_name          = "${local.function_names[each.key]}-errors"
  alarm_description   = "${local.function_names[each.key]} raised errors (runbook: docs/OPERATIONS.md#alarm-function-errors)"
  namespace           = "AWS/Lambda"
  metric_name         = "Errors"
  dimensions          = { FunctionName = aws_lambda_function.this[each.key].function_name }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 1
  comparison_operator = "GreaterThanOrEqualToThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

# Runbook: OPERATIONS.md "Alarm: function throttles".
resource "aws_cloudwatch_metric_alarm" "function_throttles" {
  for_each = var.create_alarms ? local.functions : {}

  alarm_name          = "${local.function_names[each.key]}-throttles"
  alarm_description   = "${local.function_names[each.key]} hit its reserved concurrency (runbook: docs/OPERATIONS.md#alarm-function-throttles)"
  namespace           = "AWS/Lambda"
  metric_name         = "Throttles"
  dimensions          = { FunctionName = aws_lambda_function.this[each.key].function_name }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 2
  threshold           = 1
  comparison_operator = "GreaterThanOrEqualToThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

# Runbook: OPERATIONS.md "Alarm: key pool below floor". KeyPoolActiveKeys (dimensions
# service, suite) is the pool size the key-management functions publish (Powertools EMF).
resource "aws_cloudwatch_metric_alarm" "key_pool_low" {
  for_each = var.create_alarms ? toset(["xwing", "mlkem768"]) : toset([])

  alarm_name          = "${local.name}-key-pool-low-${each.key}"
  alarm_description   = "Fewer than ${var.key_pool_floor} active ${each.key} keys (runbook: docs/OPERATIONS.md#alarm-key-pool-below-floor)"
  namespace           = var.metrics_namespace
  metric_name         = "KeyPoolActiveKeys"
  dimensions          = { service = "pqfile", suite = each.key }
  statistic           = "Minimum"
  period              = 300
  evaluation_periods  = 1
  threshold           = var.key_pool_floor
  comparison_operator = "LessThanThreshold"
  # An unused suite publishes nothing; silence must not page.
  treat_missing_data = "notBreaching"
  alarm_actions      = local.alarm_actions
  ok_actions         = local.alarm_actions
}

# Runbook: OPERATIONS.md "Alarm: audit verification failed". The scheduled audit_verify
# function (audit_verify.tf, hourly by default) publishes AuditVerificationFailures (0 or 1)
# each time it runs (`pqfile audit verify` on the command line publishes nothing).
resource "aws_cloudwatch_metric_alarm" "audit_verification_failed" {
  count = var.create_alarms ? 1 : 0

  alarm_name          = "${local.name}-audit-verification-failed"
  alarm_description   = "The audit hash chain failed verification (runbook: docs/OPERATIONS.md#alarm-audit-verification-failed)"
  namespace           = var.metrics_namespace
  metric_name         = "AuditVerificationFailures"
  dimensions          = { service = "pqfile" }
  statistic           = "Maximum"
  period              = 3600
  evaluation_periods  = 1
  threshold           = 1
  comparison_operator = "GreaterThanOrEqualToThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

# Runbook: OPERATIONS.md "Alarm: dead letters". Undelivered events or failed asynchronous
# invocations wait in the queues.
resource "aws_cloudwatch_metric_alarm" "dead_letters" {
  for_each = var.create_alarms ? {
    events    = aws_sqs_queue.event_failures.name
    functions = aws_sqs_queue.function_failures.name
  } : {}

  alarm_name          = "${local.name}-dead-letters-${each.key}"
  alarm_description   = "Messages in ${each.value} (runbook: docs/OPERATIONS.md#alarm-dead-letters)"
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateNumberOfMessagesVisible"
  dimensions          = { QueueName = each.value }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 1
  comparison_operator = "GreaterThanOrEqualToThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}
