# S3 "Object Created" under uploads/ in the uploads bucket starts one ingest execution.

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

data "aws_iam_policy_document" "events_assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["events.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_iam_role" "events" {
  name               = "${local.name}-events-${local.region}"
  description        = "EventBridge: starts the ${local.name}-ingest state machine"
  assume_role_policy = data.aws_iam_policy_document.events_assume.json
}

data "aws_iam_policy_document" "events" {
  statement {
    sid       = "StartIngest"
    actions   = ["states:StartExecution"]
    resources = [aws_sfn_state_machine.ingest.arn]
  }
}

resource "aws_iam_role_policy" "events" {
  name   = "start-ingest"
  role   = aws_iam_role.events.id
  policy = data.aws_iam_policy_document.events.json
}

resource "aws_cloudwatch_event_target" "ingest" {
  rule     = aws_cloudwatch_event_rule.upload_created.name
  arn      = aws_sfn_state_machine.ingest.arn
  role_arn = aws_iam_role.events.arn

  retry_policy {
    maximum_event_age_in_seconds = 86400
    maximum_retry_attempts       = 185
  }

  dead_letter_config {
    arn = aws_sqs_queue.event_failures.arn
  }
}

# Events EventBridge could not deliver (the state machine refused or was throttled for a day).
resource "aws_sqs_queue" "event_failures" {
  name                      = "${local.name}-event-failures"
  kms_master_key_id         = aws_kms_key.data.arn
  message_retention_seconds = 1209600
}

data "aws_iam_policy_document" "event_failures" {
  statement {
    sid       = "EventBridgeDeadLetters"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.event_failures.arn]

    principals {
      type        = "Service"
      identifiers = ["events.amazonaws.com"]
    }

    condition {
      test     = "ArnEquals"
      variable = "aws:SourceArn"
      values   = [aws_cloudwatch_event_rule.upload_created.arn]
    }
  }

  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["sqs:*"]
    resources = [aws_sqs_queue.event_failures.arn]

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

resource "aws_sqs_queue_policy" "event_failures" {
  queue_url = aws_sqs_queue.event_failures.id
  policy    = data.aws_iam_policy_document.event_failures.json
}
