# Alarms (docs/OPERATIONS.md has a runbook per alarm), all to one encrypted SNS topic.

locals {
  alarm_actions = var.create_alarms ? [aws_sns_topic.alarms[0].arn] : []

  # Per workflow (stepfunctions.tf): how its failed-executions alarm names it, the period
  # it sums over, and its runbook.
  workflow_alarms = {
    ingest      = { subject = "Ingest", period = 300, runbook = "docs/OPERATIONS.md#alarm-ingest-executions-failed" }
    rotate-keys = { subject = "rotate-keys", period = 3600, runbook = "docs/OPERATIONS.md#alarm-rotation-executions-failed" }
  }
}

resource "aws_sns_topic" "alarms" {
  count = var.create_alarms ? 1 : 0

  name              = "${local.name}-alarms"
  kms_master_key_id = aws_kms_key.this["data"].arn
}

data "aws_iam_policy_document" "alarms_topic" {
  count = var.create_alarms ? 1 : 0

  # TLS only (iam.tf), after the publishing statement.
  override_policy_documents = [data.aws_iam_policy_document.tls_only["topic_alarms"].json]

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

# Runbooks: OPERATIONS.md "Alarm: ingest executions failed", "Alarm: rotation executions
# failed".
resource "aws_cloudwatch_metric_alarm" "executions_failed" {
  for_each = var.create_alarms ? local.workflow_alarms : {}

  alarm_name          = "${local.name}-${each.key}-executions-failed"
  alarm_description   = "${each.value.subject} executions failed, timed out or were aborted (runbook: ${each.value.runbook})"
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
        period      = each.value.period
        stat        = "Sum"
        dimensions  = { StateMachineArn = aws_sfn_state_machine.workflow[each.key].arn }
      }
    }
  }
}

# The single-metric alarms (modules/metric-alarms), one group per kind, keyed as the
# resources they were before. Runbooks: OPERATIONS.md "Alarm: function errors", "Alarm:
# function throttles", "Alarm: key pool below floor", "Alarm: audit verification failed",
# "Alarm: events not delivered", "Alarm: dead letters".
locals {
  function_alarms = {
    errors    = { metric_name = "Errors", evaluation_periods = 1, says = "raised errors", runbook = "docs/OPERATIONS.md#alarm-function-errors" }
    throttles = { metric_name = "Throttles", evaluation_periods = 2, says = "hit its reserved concurrency", runbook = "docs/OPERATIONS.md#alarm-function-throttles" }
  }

  metric_alarms = merge(
    {
      for kind, alarm in local.function_alarms : "function_${kind}" => {
        for k, name in local.function_names : k => {
          name               = "${name}-${kind}"
          description        = "${name} ${alarm.says} (runbook: ${alarm.runbook})"
          namespace          = "AWS/Lambda"
          metric_name        = alarm.metric_name
          dimensions         = { FunctionName = aws_lambda_function.this[k].function_name }
          evaluation_periods = alarm.evaluation_periods
        }
      }
    },
    {
      # KeyPoolActiveKeys (dimensions service, suite) is the pool size the key-management
      # functions publish (Powertools EMF); an unused suite publishes nothing.
      key_pool_low = {
        for suite in ["xwing", "mlkem768", "mlkem1024"] : suite => {
          name                = "${local.name}-key-pool-low-${suite}"
          description         = "Fewer than ${var.key_pool_floor} active ${suite} keys (runbook: docs/OPERATIONS.md#alarm-key-pool-below-floor)"
          namespace           = var.metrics_namespace
          metric_name         = "KeyPoolActiveKeys"
          dimensions          = { service = "pqfile", suite = suite }
          statistic           = "Minimum"
          threshold           = var.key_pool_floor
          comparison_operator = "LessThanThreshold"
        }
      }
      # The scheduled audit_verify function (audit_verify.tf, hourly by default) publishes
      # AuditVerificationFailures (0 or 1) each time it runs (`pqfile audit verify` on the
      # command line publishes nothing). An hour without the metric (the function cannot log
      # in, times out, is not scheduled) is a failed verification: tamper detection fails
      # closed.
      audit_verification_failed = {
        chain = {
          name               = "${local.name}-audit-verification-failed"
          description        = "The audit hash chain failed verification, or no verification ran for an hour (runbook: docs/OPERATIONS.md#alarm-audit-verification-failed)"
          namespace          = var.metrics_namespace
          metric_name        = "AuditVerificationFailures"
          dimensions         = { service = "pqfile" }
          statistic          = "Maximum"
          period             = 3600
          treat_missing_data = "breaching"
        }
      }
      # The scheduled audit_digest function (audit_digests.tf) publishes AuditDigestFailures
      # (1 when the log no longer matches the latest signed digest, else 0) each run. With
      # the schedule on, two hours without the metric (the function cannot sign, log in or
      # write) breach too: the digests stop proving anything once they stop.
      audit_digest_failed = {
        digest = {
          name               = "${local.name}-audit-digest-failed"
          description        = "The audit log no longer matches its latest signed digest, or no digest ran for two hours (runbook: docs/OPERATIONS.md#alarm-audit-digest-failed)"
          namespace          = var.metrics_namespace
          metric_name        = "AuditDigestFailures"
          dimensions         = { service = "pqfile" }
          statistic          = "Maximum"
          period             = 7200
          treat_missing_data = var.enable_audit_digest_schedule ? "breaching" : "notBreaching"
        }
      }
      # EventsNotDelivered (dimension service) counts completion events a function could not
      # put on the default bus after its retries (docs/CONTRACTS.md); the work itself stands.
      events_not_delivered = {
        events = {
          name        = "${local.name}-events-not-delivered"
          description = "Completion events (PQFile Document Encrypted/Failed, Key Revoked) were not delivered (runbook: docs/OPERATIONS.md#alarm-events-not-delivered)"
          namespace   = var.metrics_namespace
          metric_name = "EventsNotDelivered"
          dimensions  = { service = "pqfile" }
        }
      }
      # Undelivered events or failed asynchronous invocations wait in the queues (queues.tf).
      dead_letters = {
        for k, queue in aws_sqs_queue.failures : k => {
          name        = "${local.name}-dead-letters-${k}"
          description = "Messages in ${queue.name} (runbook: docs/OPERATIONS.md#alarm-dead-letters)"
          namespace   = "AWS/SQS"
          metric_name = "ApproximateNumberOfMessagesVisible"
          dimensions  = { QueueName = queue.name }
          statistic   = "Maximum"
        }
      }
    },
  )
}

module "metric_alarms" {
  source   = "./modules/metric-alarms"
  for_each = { for group, alarms in local.metric_alarms : group => alarms if var.create_alarms }

  alarms  = each.value
  actions = local.alarm_actions
}
