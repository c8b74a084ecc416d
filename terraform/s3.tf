# Two buckets: `uploads` (plaintext arrives under uploads/; uploads the pipeline failed on
# stay there, tagged pqfile-status=failed, until the quarantine rule expires them)
# and `encrypted` (packages under encrypted/, short-lived retrieval copies under
# retrievals/). Both: private, owner-enforced, TLS-only, versioned, SSE-KMS with bucket
# keys, lifecycle-managed, optionally access-logged.

locals {
  buckets = {
    uploads   = "${local.name}-uploads-${local.account_id}"
    encrypted = "${local.name}-encrypted-${local.account_id}"
  }

  lifecycle_rules = {
    uploads = [
      { id = "expire-quarantined-uploads", prefix = local.uploads_prefix, tags = { (local.failed_tag) = "failed" }, days = var.quarantine_expiration_days },
    ]
    encrypted = [
      { id = "expire-retrieval-copies", prefix = local.retrievals_prefix, tags = {}, days = var.retrieval_expiration_days },
      # Rotation batch manifests (rotation.tf): read by the workflow within its 23 hours.
      { id = "expire-rotation-manifests", prefix = local.rotation_manifests_prefix, tags = {}, days = 7 },
    ]
  }
}

resource "aws_s3_bucket" "this" {
  #checkov:skip=CKV_AWS_144:Cross-region replication is a disaster-recovery choice per deployment; versioning and backups cover loss here.
  #checkov:skip=CKV2_AWS_62:Only the uploads bucket notifies (to EventBridge, s3_notifications below); the encrypted bucket has no consumer.
  #checkov:skip=CKV_AWS_18:Access logging is on when enable_access_logging is true (the default, and prod); the local emulator turns it off.
  for_each = local.buckets

  bucket        = each.value
  force_destroy = var.force_destroy_buckets
}

resource "aws_s3_bucket_public_access_block" "this" {
  for_each = local.all_buckets

  bucket                  = each.value.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "this" {
  for_each = local.all_buckets

  bucket = each.value.id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_versioning" "this" {
  for_each = local.all_buckets

  bucket = each.value.id

  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "this" {
  for_each = aws_s3_bucket.this

  bucket = each.value.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = aws_kms_key.this["data"].arn
    }
    bucket_key_enabled = true
  }
}

# Besides TLS only (iam.tf): TLS 1.2 or later, and objects written with our key. A plain
# upload (no encryption headers) gets the key from the bucket's default encryption and must be
# allowed, so each encryption Deny applies only when the header is present (Null = false) and
# asks for something else: another KMS key, or SSE-S3. (IfExists or a bare negated operator
# would also match an absent header and refuse every plain upload.)
locals {
  bucket_denials = [
    {
      sid        = "DenyOutdatedTls"
      actions    = ["s3:*"]
      bucket     = true
      conditions = [{ test = "NumericLessThan", variable = "s3:TlsVersion", values = ["1.2"] }]
    },
    {
      sid     = "DenyOtherEncryptionKeys"
      actions = ["s3:PutObject"]
      bucket  = false
      conditions = [
        { test = "Null", variable = "s3:x-amz-server-side-encryption-aws-kms-key-id", values = ["false"] },
        { test = "StringNotEquals", variable = "s3:x-amz-server-side-encryption-aws-kms-key-id", values = [aws_kms_key.this["data"].arn] },
      ]
    },
    {
      sid     = "DenyOtherEncryptionTypes"
      actions = ["s3:PutObject"]
      bucket  = false
      conditions = [
        { test = "Null", variable = "s3:x-amz-server-side-encryption", values = ["false"] },
        { test = "StringNotEquals", variable = "s3:x-amz-server-side-encryption", values = ["aws:kms"] },
      ]
    },
  ]
}

module "bucket_denials" {
  source   = "./modules/policy-statements"
  for_each = aws_s3_bucket.this

  statements = [
    for denial in local.bucket_denials : {
      sid        = denial.sid
      effect     = "Deny"
      actions    = denial.actions
      resources  = denial.bucket ? [each.value.arn, "${each.value.arn}/*"] : ["${each.value.arn}/*"]
      principals = [{ type = "*", identifiers = ["*"] }]
      conditions = denial.conditions
    }
  ]
}

# Custody (issue 9): explicit denials for every principal but the named roles, whatever
# IAM policies in the account allow (an administrator's included):
# - plaintext uploads (uploads/) are read only by the functions that need them: fetch,
#   encrypt, store;
# - plaintext retrieval copies (retrievals/) only by retrieve (its role also signs the
#   presigned URLs, so a presigned GET is retrieve's request);
# - packages (encrypted/) are deleted by nobody but the role that completes an operator's
#   shred or compromise request: the execution role of the `shred` function (issue 12,
#   `<name>-shred-<region>`, the function roles' naming), or package_deleter_role_arn. Not
#   Object Lock: it would block shredding too. (Noncurrent versions still expire by the
#   lifecycle rule: a rewrap leaves the old version behind.)
locals {
  package_deleter_role_arn = var.package_deleter_role_arn != "" ? var.package_deleter_role_arn : "arn:${local.partition}:iam::${local.account_id}:role/${local.name}-shred-${local.region}"

  bucket_custody = {
    uploads = [
      {
        sid       = "DenyPlaintextReadsButIngest"
        actions   = ["s3:GetObject", "s3:GetObjectVersion"]
        resources = ["${aws_s3_bucket.this["uploads"].arn}/${local.uploads_prefix}*"]
        allowed   = [for k in ["fetch", "encrypt", "store"] : aws_iam_role.function[k].arn]
      },
    ]
    encrypted = [
      {
        sid       = "DenyRetrievalReadsButRetrieve"
        actions   = ["s3:GetObject", "s3:GetObjectVersion"]
        resources = ["${aws_s3_bucket.this["encrypted"].arn}/${local.retrievals_prefix}*"]
        allowed   = [aws_iam_role.function["retrieve"].arn]
      },
      {
        sid       = "DenyPackageDeletionButShred"
        actions   = ["s3:DeleteObject", "s3:DeleteObjectVersion"]
        resources = ["${aws_s3_bucket.this["encrypted"].arn}/${local.encrypted_prefix}*"]
        allowed   = [local.package_deleter_role_arn]
      },
    ]
  }
}

module "bucket_custody" {
  source   = "./modules/policy-statements"
  for_each = aws_s3_bucket.this

  statements = [
    for custody in local.bucket_custody[each.key] : {
      sid        = custody.sid
      effect     = "Deny"
      actions    = custody.actions
      resources  = custody.resources
      principals = [{ type = "*", identifiers = ["*"] }]
      conditions = [{ test = "ArnNotEquals", variable = "aws:PrincipalArn", values = custody.allowed }]
    }
  ]
}

data "aws_iam_policy_document" "bucket" {
  for_each = aws_s3_bucket.this

  source_policy_documents = [
    data.aws_iam_policy_document.tls_only["bucket_${each.key}"].json,
    module.bucket_denials[each.key].json,
    module.bucket_custody[each.key].json,
  ]
}

resource "aws_s3_bucket_policy" "this" {
  for_each = aws_s3_bucket.this

  bucket = each.value.id
  policy = data.aws_iam_policy_document.bucket[each.key].json

  depends_on = [aws_s3_bucket_public_access_block.this]
}

resource "aws_s3_bucket_lifecycle_configuration" "this" {
  for_each = aws_s3_bucket.this

  bucket = each.value.id

  rule {
    id     = "abort-incomplete-multipart-uploads"
    status = "Enabled"

    filter {}

    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }

  rule {
    id     = "expire-noncurrent-versions"
    status = "Enabled"

    filter {}

    noncurrent_version_expiration {
      noncurrent_days = var.noncurrent_version_expiration_days
    }

    expiration {
      expired_object_delete_marker = true
    }
  }

  dynamic "rule" {
    for_each = local.lifecycle_rules[each.key]

    content {
      id     = rule.value.id
      status = "Enabled"

      # One condition per rule: a prefix, or a tag (only uploads/ objects are ever tagged).
      # A prefix-and-tag filter would make the provider send ObjectSizeGreaterThan = 0,
      # which the local emulator drops, and the provider then waits forever for it.
      filter {
        prefix = length(rule.value.tags) > 0 ? null : rule.value.prefix

        dynamic "tag" {
          for_each = rule.value.tags

          content {
            key   = tag.key
            value = tag.value
          }
        }
      }

      expiration {
        days = rule.value.days
      }

      noncurrent_version_expiration {
        noncurrent_days = rule.value.days
      }
    }
  }

  depends_on = [aws_s3_bucket_versioning.this]
}

# EventBridge receives every object event of the uploads bucket; the rule (eventbridge.tf)
# keeps only "Object Created" under uploads/.
resource "aws_s3_bucket_notification" "uploads" {
  bucket      = aws_s3_bucket.this["uploads"].id
  eventbridge = true
}

# --- log bucket: S3 server access logs (s3/) and CloudTrail (cloudtrail/), optional ------

locals {
  create_log_bucket = var.enable_access_logging || var.create_cloudtrail
  trail_name        = "${local.name}-trail"
  trail_arn         = "arn:${local.partition}:cloudtrail:${local.region}:${local.account_id}:trail/${local.trail_name}"

  # Private, owner-enforced and versioned like the others (above).
  all_buckets = merge(aws_s3_bucket.this, local.create_log_bucket ? { access_logs = aws_s3_bucket.access_logs[0] } : {})
}

resource "aws_s3_bucket" "access_logs" {
  #checkov:skip=CKV_AWS_18:This is the access-log destination; logging it into itself would loop.
  #checkov:skip=CKV_AWS_144:Cross-region replication of access logs is a per-deployment choice.
  #checkov:skip=CKV2_AWS_62:No consumer needs events from the access-log bucket.
  #checkov:skip=CKV_AWS_145:S3 server access logging can only deliver to SSE-S3 buckets, not SSE-KMS.
  count = local.create_log_bucket ? 1 : 0

  bucket        = "${local.name}-logs-${local.account_id}"
  force_destroy = var.force_destroy_buckets
}

resource "aws_s3_bucket_server_side_encryption_configuration" "access_logs" {
  count = local.create_log_bucket ? 1 : 0

  bucket = aws_s3_bucket.access_logs[0].id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "access_logs" {
  count = local.create_log_bucket ? 1 : 0

  bucket = aws_s3_bucket.access_logs[0].id

  rule {
    id     = "expire-access-logs"
    status = "Enabled"

    filter {}

    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }

    expiration {
      days = var.log_retention_days
    }

    noncurrent_version_expiration {
      noncurrent_days = 30
    }
  }

  depends_on = [aws_s3_bucket_versioning.this]
}

data "aws_iam_policy_document" "access_logs" {
  count = local.create_log_bucket ? 1 : 0

  # TLS only (iam.tf), after the delivery statements.
  override_policy_documents = [data.aws_iam_policy_document.tls_only["bucket_access_logs"].json]

  statement {
    sid       = "S3ServerAccessLogsDelivery"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.access_logs[0].arn}/*"]

    principals {
      type        = "Service"
      identifiers = ["logging.s3.amazonaws.com"]
    }

    condition {
      test     = "ArnLike"
      variable = "aws:SourceArn"
      values   = [for b in aws_s3_bucket.this : b.arn]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }

  dynamic "statement" {
    for_each = var.create_cloudtrail ? [
      { sid = "CloudTrailAclCheck", actions = ["s3:GetBucketAcl"], resources = [aws_s3_bucket.access_logs[0].arn] },
      { sid = "CloudTrailDelivery", actions = ["s3:PutObject"], resources = ["${aws_s3_bucket.access_logs[0].arn}/cloudtrail/AWSLogs/${local.account_id}/*"] },
    ] : []

    content {
      sid       = statement.value.sid
      actions   = statement.value.actions
      resources = statement.value.resources

      principals {
        type        = "Service"
        identifiers = ["cloudtrail.amazonaws.com"]
      }

      condition {
        test     = "StringEquals"
        variable = "aws:SourceArn"
        values   = [local.trail_arn]
      }
    }
  }
}

resource "aws_s3_bucket_policy" "access_logs" {
  count = local.create_log_bucket ? 1 : 0

  bucket = aws_s3_bucket.access_logs[0].id
  policy = data.aws_iam_policy_document.access_logs[0].json

  depends_on = [aws_s3_bucket_public_access_block.this]
}

resource "aws_s3_bucket_logging" "this" {
  for_each = var.enable_access_logging ? aws_s3_bucket.this : {}

  bucket        = each.value.id
  target_bucket = aws_s3_bucket.access_logs[0].id
  target_prefix = "s3/${each.key}/"
}
