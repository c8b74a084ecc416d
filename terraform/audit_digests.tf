# Signed tree heads of the audit log (issue 14; docs/OPERATIONS.md, "Audit digests"):
# pqfile.handlers.audit_digest reads the audit rows' hashes as the read-only pqfile_auditor
# role, signs a tree head with an asymmetric KMS key (kms:Sign on that key only) and writes
# digests/<tree size>.json to a bucket with S3 Object Lock (retention by the bucket default,
# so the function needs no s3:PutObjectRetention; it has no delete). The schedule
# (enable_audit_digest_schedule) is in eventbridge.tf, the function's environment
# (PQFILE_DIGEST_*) in lambda.tf; outputs are in outputs.tf.

variable "audit_digest_key_spec" {
  description = "Key spec of the KMS key that signs audit digests: ECC_NIST_P384 (ECDSA_SHA_384) or ML_DSA_65 (ML_DSA_SHAKE_256, post-quantum). The pinned aws provider (5.100) does not accept ML_DSA_65 yet (it refuses the spec at plan time), so the default stays ECC_NIST_P384 until a provider release allows ML-DSA; the local emulator signs with ML-DSA in tests (devstack/moto_patches/kms_mldsa.py)."
  type        = string
  default     = "ECC_NIST_P384"

  validation {
    condition     = contains(["ECC_NIST_P384", "ML_DSA_65"], var.audit_digest_key_spec)
    error_message = "audit_digest_key_spec must be ECC_NIST_P384 or ML_DSA_65."
  }
}

variable "audit_digest_lock_mode" {
  description = "S3 Object Lock mode of the digest bucket's default retention: COMPLIANCE in prod (nobody, root included, can delete a digest before its retention ends), GOVERNANCE in dev and locally (s3:BypassGovernanceRetention lets teardown delete them)."
  type        = string
  default     = "GOVERNANCE"

  validation {
    condition     = contains(["COMPLIANCE", "GOVERNANCE"], var.audit_digest_lock_mode)
    error_message = "audit_digest_lock_mode must be COMPLIANCE or GOVERNANCE."
  }
}

variable "audit_digest_retention_days" {
  description = "Days each digest object is locked (S3 Object Lock default retention of the digest bucket)."
  type        = number
  default     = 2557 # 7 years

  validation {
    condition     = var.audit_digest_retention_days >= 1 && var.audit_digest_retention_days <= 36500 && floor(var.audit_digest_retention_days) == var.audit_digest_retention_days
    error_message = "audit_digest_retention_days must be a whole number of days, 1-36500."
  }
}

variable "enable_audit_digest_schedule" {
  description = "Sign an audit digest (audit_digest function) on audit_digest_schedule."
  type        = bool
  default     = true
}

variable "audit_digest_schedule" {
  description = "EventBridge schedule of the audit digests (a signed tree head when rows were added)."
  type        = string
  default     = "rate(1 hour)"

  validation {
    condition     = can(regex("^(rate|cron)\\(.+\\)$", var.audit_digest_schedule))
    error_message = "audit_digest_schedule must be a rate(...) or cron(...) expression."
  }
}

locals {
  digest_function = "audit_digest"
  digest_functions = {
    (local.digest_function) = {
      handler     = "pqfile.handlers.audit_digest.handler"
      description = "Signs a tree head of the audit log with KMS and writes it to the Object Lock digest bucket"
      seed_access = "none"
      attestation = "none"
    }
  }

  # The signing algorithm of each key spec (pqfile.config DIGEST_ALGORITHMS).
  digest_signing_algorithm = { ECC_NIST_P384 = "ECDSA_SHA_384", ML_DSA_65 = "ML_DSA_SHAKE_256" }[var.audit_digest_key_spec]
  digest_prefix            = "digests/"
}

# --- the signing key -----------------------------------------------------------------------

data "aws_iam_policy_document" "audit_digest_key" {
  #checkov:skip=CKV_AWS_356:A key policy cannot name its own key ARN: "*" is the documented form, and means this key alone.
  #checkov:skip=CKV_AWS_109:The administration statement is the shared one of every key (kms.tf).
  #checkov:skip=CKV_AWS_111:The administration statement is the shared one of every key (kms.tf).
  source_policy_documents = [data.aws_iam_policy_document.kms_administration.json]

  # Only the digest function signs, RAW messages with the key's one algorithm.
  statement {
    sid       = "SignDigestsAuditDigestOnly"
    actions   = ["kms:Sign"]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = [aws_iam_role.function[local.digest_function].arn]
    }

    condition {
      test     = "StringEquals"
      variable = "kms:SigningAlgorithm"
      values   = [local.digest_signing_algorithm]
    }

    condition {
      test     = "StringEquals"
      variable = "kms:MessageType"
      values   = ["RAW"]
    }
  }

  # Anyone in the account whose IAM policy allows it may fetch the public key and verify
  # (`pqfile audit verify --digests` needs the public key only).
  statement {
    sid       = "VerifyThroughIam"
    actions   = ["kms:GetPublicKey", "kms:Verify", "kms:DescribeKey"]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account_id}:root"]
    }
  }
}

resource "aws_kms_key" "audit_digests" {
  #checkov:skip=CKV_AWS_7:KMS cannot rotate asymmetric keys; a new key means a new key_id in the next digest.
  description              = "${local.name}: signs the audit log's tree heads (digests)"
  key_usage                = "SIGN_VERIFY"
  customer_master_key_spec = var.audit_digest_key_spec
  enable_key_rotation      = false
  deletion_window_in_days  = var.kms_deletion_window_days
  policy                   = data.aws_iam_policy_document.audit_digest_key.json
  # As the other keys (kms.tf): no administrator may PutKeyPolicy.
  bypass_policy_lockout_safety_check = true
}

resource "aws_kms_alias" "audit_digests" {
  name          = "alias/${local.name}-audit-digests"
  target_key_id = aws_kms_key.audit_digests.key_id
}

# --- the Object Lock bucket ----------------------------------------------------------------

resource "aws_s3_bucket" "audit_digests" {
  #checkov:skip=CKV_AWS_144:Cross-region replication is a disaster-recovery choice per deployment; Object Lock keeps the digests here.
  #checkov:skip=CKV2_AWS_62:No consumer needs events from the digest bucket.
  #checkov:skip=CKV_AWS_18:Access logging of this bucket is a per-deployment choice; CloudTrail data events cover writes.
  #checkov:skip=CKV2_AWS_61:Digests are kept for their retention; no lifecycle rule may expire them.
  bucket              = "${local.name}-audit-digests-${local.account_id}"
  object_lock_enabled = true
  # Governance mode (dev, local) lets teardown delete; compliance mode (prod) never does.
  force_destroy = var.force_destroy_buckets
}

resource "aws_s3_bucket_public_access_block" "audit_digests" {
  bucket                  = aws_s3_bucket.audit_digests.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "audit_digests" {
  bucket = aws_s3_bucket.audit_digests.id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

# Object Lock requires versioning.
resource "aws_s3_bucket_versioning" "audit_digests" {
  bucket = aws_s3_bucket.audit_digests.id

  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_object_lock_configuration" "audit_digests" {
  bucket = aws_s3_bucket.audit_digests.id

  rule {
    default_retention {
      mode = var.audit_digest_lock_mode
      days = var.audit_digest_retention_days
    }
  }

  depends_on = [aws_s3_bucket_versioning.audit_digests]
}

resource "aws_s3_bucket_server_side_encryption_configuration" "audit_digests" {
  bucket = aws_s3_bucket.audit_digests.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = aws_kms_key.this["data"].arn
    }
    bucket_key_enabled = true
  }
}

data "aws_iam_policy_document" "audit_digests_bucket" {
  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.audit_digests.arn, "${aws_s3_bucket.audit_digests.arn}/*"]

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

resource "aws_s3_bucket_policy" "audit_digests" {
  bucket = aws_s3_bucket.audit_digests.id
  policy = data.aws_iam_policy_document.audit_digests_bucket.json

  depends_on = [aws_s3_bucket_public_access_block.audit_digests]
}

# --- the function's own access (besides lambda.tf/iam.tf's shared statements) --------------

data "aws_iam_policy_document" "audit_digest_function" {
  statement {
    sid       = "SignDigests"
    actions   = ["kms:Sign"]
    resources = [aws_kms_key.audit_digests.arn]
  }

  # Reads the latest digest and writes the next, never deletes or changes retention.
  statement {
    sid       = "ReadWriteDigests"
    actions   = ["s3:GetObject", "s3:PutObject"]
    resources = ["${aws_s3_bucket.audit_digests.arn}/${local.digest_prefix}*"]
  }

  statement {
    sid       = "ListDigests"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.audit_digests.arn]

    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = [local.digest_prefix, "${local.digest_prefix}*"]
    }
  }
}

resource "aws_iam_role_policy" "audit_digest" {
  name   = "pqfile-audit-digest-signing"
  role   = aws_iam_role.function[local.digest_function].id
  policy = data.aws_iam_policy_document.audit_digest_function.json
}

resource "aws_lambda_permission" "audit_digest_schedule" {
  count = var.enable_audit_digest_schedule ? 1 : 0

  statement_id  = "AllowAuditDigestSchedule"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.this[local.digest_function].function_name
  principal     = "events.amazonaws.com"
  source_arn    = aws_cloudwatch_event_rule.schedule["audit-digest"].arn
}
