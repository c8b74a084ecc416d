# The record of who did what: management events in every region, plus data events for the
# two buckets (every object read, write, delete) and for the retrieve function (every
# Invoke, with the calling principal: the audit trail's request id joins on it).

# Not in modules/log-groups (logs.tf) like the others: checkov's CloudTrail-to-CloudWatch check
# (CKV2_AWS_10) follows the trail's reference only to a log group of this module.
resource "aws_cloudwatch_log_group" "trail" {
  count = var.create_cloudtrail ? 1 : 0

  name              = "/aws/cloudtrail/${local.trail_name}"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.this["data"].arn
}

resource "aws_cloudtrail" "this" {
  #checkov:skip=CKV_AWS_252:Trail delivery notifications are not consumed; the alarms cover the stack's failures.
  count = var.create_cloudtrail ? 1 : 0

  name                          = local.trail_name
  s3_bucket_name                = aws_s3_bucket.access_logs[0].id
  s3_key_prefix                 = "cloudtrail"
  kms_key_id                    = aws_kms_key.this["data"].arn
  is_multi_region_trail         = true
  include_global_service_events = true
  enable_log_file_validation    = true
  cloud_watch_logs_group_arn    = "${aws_cloudwatch_log_group.trail[0].arn}:*"
  cloud_watch_logs_role_arn     = aws_iam_role.service["trail"].arn

  event_selector {
    read_write_type           = "All"
    include_management_events = true

    data_resource {
      type   = "AWS::S3::Object"
      values = [for b in aws_s3_bucket.this : "${b.arn}/"]
    }

    data_resource {
      type   = "AWS::Lambda::Function"
      values = [aws_lambda_function.this["retrieve"].arn]
    }
  }

  depends_on = [aws_s3_bucket_policy.access_logs, aws_iam_role_policy.service]
}
