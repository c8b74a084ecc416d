# One role per function, each scoped to the exact ARNs (and object prefixes) it touches.

locals {
  uploads_arn   = aws_s3_bucket.this["uploads"].arn
  encrypted_arn = aws_s3_bucket.this["encrypted"].arn

  # Object access per function: which bucket prefix, which actions.
  # Object access per function (functions/pqfile/usecases): which prefix, which actions.
  # Version actions are listed with their plain forms: the code addresses object versions.
  s3_access = {
    fetch = [
      { sid = "StatUploads", actions = ["s3:GetObject", "s3:GetObjectVersion"], resources = ["${local.uploads_arn}/${local.uploads_prefix}*"] },
    ]
    select_key = []
    encrypt = [
      { sid = "ReadUploads", actions = ["s3:GetObject", "s3:GetObjectVersion"], resources = ["${local.uploads_arn}/${local.uploads_prefix}*"] },
      { sid = "WritePackages", actions = ["s3:GetObject", "s3:GetObjectVersion", "s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"], resources = ["${local.encrypted_arn}/${local.encrypted_prefix}*"] },
    ]
    store = [
      # Verifies the package; deletes a package version that fails verification.
      { sid = "VerifyPackages", actions = ["s3:GetObject", "s3:GetObjectVersion", "s3:DeleteObjectVersion"], resources = ["${local.encrypted_arn}/${local.encrypted_prefix}*"] },
      { sid = "DeletePlaintext", actions = ["s3:GetObject", "s3:GetObjectVersion", "s3:DeleteObject", "s3:DeleteObjectVersion"], resources = ["${local.uploads_arn}/${local.uploads_prefix}*"] },
    ]
    audit = []
    record_failure = [
      # Keeps the failed upload, tagged for the quarantine lifecycle rule.
      { sid = "TagFailedUploads", actions = ["s3:PutObjectTagging", "s3:PutObjectVersionTagging", "s3:GetObjectTagging", "s3:GetObjectVersionTagging"], resources = ["${local.uploads_arn}/${local.uploads_prefix}*"] },
    ]
    # Rewrap rewrites a package in place (new header, body copied with UploadPartCopy).
    rotate_rewrap = [
      { sid = "RewritePackages", actions = ["s3:GetObject", "s3:GetObjectVersion", "s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"], resources = ["${local.encrypted_arn}/${local.encrypted_prefix}*"] },
    ]
    retrieve = [
      { sid = "ReadPackages", actions = ["s3:GetObject", "s3:GetObjectVersion"], resources = ["${local.encrypted_arn}/${local.encrypted_prefix}*"] },
      { sid = "WriteRetrievalCopies", actions = ["s3:GetObject", "s3:GetObjectVersion", "s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"], resources = ["${local.encrypted_arn}/${local.retrievals_prefix}*"] },
    ]
  }
}

data "aws_iam_policy_document" "lambda_assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_iam_role" "function" {
  for_each = local.functions

  name               = "${local.function_names[each.key]}-${local.region}"
  description        = "Execution role of ${local.function_names[each.key]}"
  assume_role_policy = data.aws_iam_policy_document.lambda_assume.json
}

data "aws_iam_policy_document" "function" {
  for_each = local.functions

  statement {
    sid       = "WriteOwnLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.function[each.key].arn}:*"]
  }

  statement {
    sid       = "FailureDestination"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.function_failures.arn]
  }

  # The data key, only through the services that hold our data (SSE-KMS objects, the
  # encrypted queue, the database secret).
  statement {
    sid       = "DataKeyThroughServices"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [aws_kms_key.data.arn]

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = [for s in ["s3", "sqs", "secretsmanager"] : "${s}.${local.region}.amazonaws.com"]
    }
  }

  dynamic "statement" {
    for_each = local.has_database_secret ? [local.database_secret_arn] : []

    content {
      sid       = "ReadDatabaseSecret"
      actions   = ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"]
      resources = [statement.value]
    }
  }

  dynamic "statement" {
    for_each = local.database_iam ? [lookup(var.database_users, each.key, "pqfile_ingest")] : []

    content {
      sid       = "ConnectAsOwnDatabaseRole"
      actions   = ["rds-db:connect"]
      resources = ["arn:${local.partition}:rds-db:${local.region}:${local.account_id}:dbuser:${aws_db_instance.this[0].resource_id}/${statement.value}"]
    }
  }

  dynamic "statement" {
    for_each = lookup(local.s3_access, each.key, [])

    content {
      sid       = statement.value.sid
      actions   = statement.value.actions
      resources = statement.value.resources
    }
  }

  # Without ListBucket, S3 answers 403 instead of 404 for a missing object, and the
  # idempotency checks (does the package exist yet?) could not tell the two apart.
  dynamic "statement" {
    for_each = length(lookup(local.s3_access, each.key, [])) > 0 ? [1] : []

    content {
      sid       = "ListForNotFound"
      actions   = ["s3:ListBucket"]
      resources = distinct([for access in lookup(local.s3_access, each.key, []) : split("/", access.resources[0])[0]])
    }
  }

  dynamic "statement" {
    for_each = each.value.seed_access == "encrypt" ? [1] : []

    content {
      sid       = "WrapSeeds"
      actions   = ["kms:Encrypt", "kms:DescribeKey"]
      resources = [aws_kms_key.seeds.arn]

      condition {
        test     = "StringEquals"
        variable = "kms:EncryptionContext:pqfile:purpose"
        values   = ["key-seed"]
      }

      condition {
        test     = "Null"
        variable = "kms:EncryptionContext:pqfile:key-id"
        values   = ["false"]
      }
    }
  }

  dynamic "statement" {
    for_each = each.value.seed_access == "decrypt" ? [1] : []

    content {
      sid       = "UnwrapSeeds"
      actions   = ["kms:Decrypt"]
      resources = [aws_kms_key.seeds.arn]

      condition {
        test     = "StringEquals"
        variable = "kms:EncryptionContext:pqfile:purpose"
        values   = ["key-seed"]
      }

      condition {
        test     = "Null"
        variable = "kms:EncryptionContext:pqfile:key-id"
        values   = ["false"]
      }
    }
  }
}

resource "aws_iam_role_policy" "function" {
  for_each = local.functions

  name   = "pqfile-${replace(each.key, "_", "-")}"
  role   = aws_iam_role.function[each.key].id
  policy = data.aws_iam_policy_document.function[each.key].json
}

# X-Ray segments and VPC network interfaces take "*" resources by design: the AWS managed
# policies for exactly those actions and nothing more.
resource "aws_iam_role_policy_attachment" "function_xray" {
  for_each = var.enable_xray ? local.functions : {}

  role       = aws_iam_role.function[each.key].name
  policy_arn = "arn:${local.partition}:iam::aws:policy/AWSXRayDaemonWriteAccess"
}

resource "aws_iam_role_policy_attachment" "function_vpc" {
  for_each = local.use_vpc ? local.functions : {}

  role       = aws_iam_role.function[each.key].name
  policy_arn = "arn:${local.partition}:iam::aws:policy/service-role/AWSLambdaENIManagementAccess"
}
