# Two customer managed keys, both rotated yearly:
# - `seeds` wraps the private-key seeds before they reach the database. Only the
#   key-management functions may Encrypt and only retrieve (and rewrap) may Decrypt, and
#   both only with an encryption context naming the key id.
# - `data` encrypts S3 objects, log groups, the alarm topic, queues, the database and its
#   secret, and the functions' environment variables.

locals {
  kms_admin_actions = [
    "kms:CancelKeyDeletion",
    "kms:CreateAlias",
    "kms:CreateGrant",
    "kms:DeleteAlias",
    "kms:DescribeKey",
    "kms:DisableKey",
    "kms:DisableKeyRotation",
    "kms:EnableKey",
    "kms:EnableKeyRotation",
    "kms:GetKeyPolicy",
    "kms:GetKeyRotationStatus",
    "kms:ListAliases",
    "kms:ListGrants",
    "kms:ListKeyPolicies",
    "kms:ListResourceTags",
    "kms:PutKeyPolicy",
    "kms:RevokeGrant",
    "kms:ScheduleKeyDeletion",
    "kms:TagResource",
    "kms:UntagResource",
    "kms:UpdateAlias",
    "kms:UpdateKeyDescription",
  ]

  # The encryption context of a wrapped seed (functions/pqfile/adapters/postgres.py,
  # seed_context): purpose "key-seed", the key id, the suite. Nothing else is accepted.
  seed_context_keys = ["pqfile:purpose", "pqfile:key-id", "pqfile:suite"]

  seed_encrypt_functions = [for k, f in local.functions : k if f.seed_access == "encrypt"]
  seed_decrypt_functions = [for k, f in local.functions : k if f.seed_access == "decrypt"]
}

# --- seeds ----------------------------------------------------------------------------

data "aws_iam_policy_document" "seeds_key" {
  #checkov:skip=CKV_AWS_111:In a key policy Resource "*" is this key alone; every use statement names exact roles and encryption-context conditions.
  #checkov:skip=CKV_AWS_356:Same: a key policy cannot name its own key ARN, "*" is the documented form.
  statement {
    sid       = "KeyAdministration"
    actions   = local.kms_admin_actions
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = local.kms_admin_arns
    }
  }

  statement {
    sid       = "WrapSeedsKeyManagementFunctionsOnly"
    actions   = ["kms:Encrypt"]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = [for k in local.seed_encrypt_functions : aws_iam_role.function[k].arn]
    }

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

    condition {
      test     = "ForAllValues:StringEquals"
      variable = "kms:EncryptionContextKeys"
      values   = local.seed_context_keys
    }
  }

  statement {
    sid       = "UnwrapSeedsRetrieveAndRewrapOnly"
    actions   = ["kms:Decrypt"]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = [for k in local.seed_decrypt_functions : aws_iam_role.function[k].arn]
    }

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

    condition {
      test     = "ForAllValues:StringEquals"
      variable = "kms:EncryptionContextKeys"
      values   = local.seed_context_keys
    }
  }

  statement {
    sid       = "DescribeForKeyUsers"
    actions   = ["kms:DescribeKey"]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = [for k in concat(local.seed_encrypt_functions, local.seed_decrypt_functions) : aws_iam_role.function[k].arn]
    }
  }
}

resource "aws_kms_key" "seeds" {
  description             = "${local.name}: wraps PQFile private-key seeds"
  key_usage               = "ENCRYPT_DECRYPT"
  enable_key_rotation     = true
  rotation_period_in_days = 365
  deletion_window_in_days = var.kms_deletion_window_days
  policy                  = data.aws_iam_policy_document.seeds_key.json
}

resource "aws_kms_alias" "seeds" {
  name          = "alias/${local.name}-seeds"
  target_key_id = aws_kms_key.seeds.key_id
}

# --- data (S3, logs, SNS, SQS, RDS, secrets, Lambda environment) -------------------------

data "aws_iam_policy_document" "data_key" {
  statement {
    sid       = "KeyAdministration"
    actions   = local.kms_admin_actions
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = local.kms_admin_arns
    }
  }

  # Grants from the account's IAM policies, limited to use through the AWS services that
  # store our data; the functions' roles name this key explicitly (iam.tf).
  statement {
    sid       = "UseThroughAwsServices"
    actions   = ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey*", "kms:ReEncrypt*", "kms:DescribeKey", "kms:CreateGrant"]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account_id}:root"]
    }

    condition {
      test     = "StringEquals"
      variable = "kms:CallerAccount"
      values   = [local.account_id]
    }

    condition {
      test     = "StringLike"
      variable = "kms:ViaService"
      values = [for s in ["s3", "sqs", "sns", "secretsmanager", "rds", "lambda", "states"] :
      "${s}.${local.region}.amazonaws.com"]
    }
  }

  statement {
    sid       = "CloudWatchLogs"
    actions   = ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"]
    resources = ["*"]

    principals {
      type        = "Service"
      identifiers = ["logs.${local.region}.amazonaws.com"]
    }

    condition {
      test     = "ArnLike"
      variable = "kms:EncryptionContext:aws:logs:arn"
      values   = ["arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:*"]
    }
  }

  # CloudWatch alarms publish to the encrypted SNS topic; EventBridge delivers to the
  # encrypted dead-letter queue.
  statement {
    sid       = "AlarmsAndEventsPublish"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey*"]
    resources = ["*"]

    principals {
      type        = "Service"
      identifiers = ["cloudwatch.amazonaws.com", "events.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }

  statement {
    sid       = "CloudTrailEncryptLogs"
    actions   = ["kms:GenerateDataKey*", "kms:DescribeKey"]
    resources = ["*"]

    principals {
      type        = "Service"
      identifiers = ["cloudtrail.amazonaws.com"]
    }

    condition {
      test     = "StringLike"
      variable = "kms:EncryptionContext:aws:cloudtrail:arn"
      values   = ["arn:${local.partition}:cloudtrail:*:${local.account_id}:trail/*"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceArn"
      values   = [local.trail_arn]
    }
  }

  # S3 server access logging and VPC flow logs run as AWS services.
  statement {
    sid       = "DeliveryServices"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey*"]
    resources = ["*"]

    principals {
      type        = "Service"
      identifiers = ["logging.s3.amazonaws.com", "delivery.logs.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_kms_key" "data" {
  description             = "${local.name}: S3 objects, logs, topics, queues, database"
  key_usage               = "ENCRYPT_DECRYPT"
  enable_key_rotation     = true
  rotation_period_in_days = 365
  deletion_window_in_days = var.kms_deletion_window_days
  policy                  = data.aws_iam_policy_document.data_key.json
}

resource "aws_kms_alias" "data" {
  name          = "alias/${local.name}-data"
  target_key_id = aws_kms_key.data.key_id
}
