# The dead-letter queues: `events`, what EventBridge could not deliver (the ingest state
# machine refused or was throttled for a day); `functions`, asynchronous invocations
# (retrieve with --invocation-type Event, retries) that still failed, with their request and
# error. Both encrypted, TLS only (iam.tf), alarmed (monitoring.tf).

locals {
  failure_queues = {
    events    = "${local.name}-event-failures"
    functions = "${local.name}-function-failures"
  }
}

resource "aws_sqs_queue" "failures" {
  for_each = local.failure_queues

  name                      = each.value
  kms_master_key_id         = aws_kms_key.this["data"].arn
  message_retention_seconds = 1209600
}

data "aws_iam_policy_document" "failures" {
  for_each = aws_sqs_queue.failures

  # TLS only (iam.tf), after the queue's own statements.
  override_policy_documents = [data.aws_iam_policy_document.tls_only["queue_${each.key}"].json]

  # Only the upload rule's target may deliver to the events queue.
  dynamic "statement" {
    for_each = each.key == "events" ? [aws_cloudwatch_event_rule.upload_created.arn] : []

    content {
      sid       = "EventBridgeDeadLetters"
      actions   = ["sqs:SendMessage"]
      resources = [each.value.arn]

      principals {
        type        = "Service"
        identifiers = ["events.amazonaws.com"]
      }

      condition {
        test     = "ArnEquals"
        variable = "aws:SourceArn"
        values   = [statement.value]
      }
    }
  }
}

resource "aws_sqs_queue_policy" "failures" {
  for_each = aws_sqs_queue.failures

  queue_url = each.value.id
  policy    = data.aws_iam_policy_document.failures[each.key].json
}
