# Three customer managed keys. Two symmetric keys, both rotated yearly:
# - `seeds` wraps the private-key seeds before they reach the database. Only the
#   key-management functions may Encrypt and only retrieve (and rewrap) may Decrypt, and
#   both only with an encryption context naming the key id.
# - `data` encrypts S3 objects, log groups, the alarm topic, queues, the database and its
#   secret, and the functions' environment variables.
# And one HMAC key (HMAC_256, GENERATE_VERIFY_MAC; KMS cannot rotate HMAC keys):
# - `attestation` attests new pool keys (a MAC over suite, key id and public key,
#   functions/pqfile/keys/attestation.py): only the maintain function may GenerateMac; the
#   functions that select keys or encrypt to them may only VerifyMac, so a key row planted
#   by SQL is never used.

locals {
  kms_admin_actions = [
    "kms:CancelKeyDeletion",
    "kms:CreateAlias",
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
    "kms:RevokeGrant",
    "kms:ScheduleKeyDeletion",
    "kms:TagResource",
    "kms:UntagResource",
    "kms:UpdateAlias",
    "kms:UpdateKeyDescription",
  ]
  # Administration never includes these two: either lets an administrator grant itself use
  # of a key (a grant, or a new policy statement). Only the break-glass principals
  # (kms_break_glass_role_arns, none by default) hold them (docs/OPERATIONS.md,
  # "Break glass: key policies").
  kms_break_glass_actions = ["kms:CreateGrant", "kms:PutKeyPolicy"]

  # The encryption context of a wrapped seed (functions/pqfile/adapters/postgres.py,
  # seed_context): purpose "key-seed", the key id, the suite. Nothing else is accepted.
  seed_context_keys = ["pqfile:purpose", "pqfile:key-id", "pqfile:suite"]
  # What both the key policy and the functions' own policies require of every seed use:
  # purpose "key-seed" and a key id.
  seed_context_conditions = [
    { test = "StringEquals", variable = "kms:EncryptionContext:pqfile:purpose", values = ["key-seed"] },
    { test = "Null", variable = "kms:EncryptionContext:pqfile:key-id", values = ["false"] },
  ]

  # The two uses of the seeds key (a function's seed_access): statement ids and actions in the
  # key policy and in the function's role policy (iam.tf). Wrapping comes first in both.
  seed_uses = [
    { access = "encrypt", key_sid = "WrapSeedsKeyManagementFunctionsOnly", role_sid = "WrapSeeds", key_actions = ["kms:Encrypt"], role_actions = ["kms:Encrypt", "kms:DescribeKey"] },
    { access = "decrypt", key_sid = "UnwrapSeedsRetrieveAndRewrapOnly", role_sid = "UnwrapSeeds", key_actions = ["kms:Decrypt"], role_actions = ["kms:Decrypt"] },
  ]
  seed_functions = { for use in local.seed_uses : use.access => [for k, f in local.functions : k if f.seed_access == use.access] }

  # The two uses of the attestation key (a function's attestation), as seed_uses.
  attestation_uses = [
    { access = "generate", key_sid = "AttestKeysMaintainOnly", role_sid = "AttestKeys", actions = ["kms:GenerateMac"] },
    { access = "verify", key_sid = "VerifyKeyAttestations", role_sid = "VerifyKeyAttestations", actions = ["kms:VerifyMac"] },
  ]
  attestation_functions = { for use in local.attestation_uses : use.access => [for k, f in local.functions : k if f.attestation == use.access] }

  key_uses = {
    # Each use only by the functions with that seed_access, only with a seed's encryption context.
    seeds = [
      for use in local.seed_uses : {
        sid        = use.key_sid
        actions    = use.key_actions
        principals = [{ type = "AWS", identifiers = [for k in local.seed_functions[use.access] : aws_iam_role.function[k].arn] }]
        conditions = concat(local.seed_context_conditions, [
          { test = "ForAllValues:StringEquals", variable = "kms:EncryptionContextKeys", values = local.seed_context_keys },
        ])
      }
    ]
    data = local.data_key_uses
    # Each MAC use only by the functions with that attestation access, only HMAC_SHA_256.
    attestation = [
      for use in local.attestation_uses : {
        sid        = use.key_sid
        actions    = use.actions
        principals = [{ type = "AWS", identifiers = [for k in local.attestation_functions[use.access] : aws_iam_role.function[k].arn] }]
        conditions = [{ test = "StringEquals", variable = "kms:MacAlgorithm", values = ["HMAC_SHA_256"] }]
      }
    ]
  }
}

# The first statement of every key policy: administration (never use) by the admin roles;
# then, only when kms_break_glass_role_arns names any, the break-glass statement.
data "aws_iam_policy_document" "kms_administration" {
  #checkov:skip=CKV_AWS_111:In a key policy Resource "*" is the key alone; administration names the admin roles, and every use statement exact roles and conditions.
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

  dynamic "statement" {
    for_each = length(var.kms_break_glass_role_arns) > 0 ? [var.kms_break_glass_role_arns] : []

    content {
      sid       = "BreakGlassPolicyAndGrants"
      actions   = local.kms_break_glass_actions
      resources = ["*"]

      principals {
        type        = "AWS"
        identifiers = statement.value
      }
    }
  }
}

# --- seeds ----------------------------------------------------------------------------

data "aws_iam_policy_document" "seeds_key" {
  #checkov:skip=CKV_AWS_356:A key policy cannot name its own key ARN: "*" is the documented form, and means this key alone.
  source_policy_documents = [data.aws_iam_policy_document.kms_administration.json, module.key_uses["seeds"].json]

  statement {
    sid       = "DescribeForKeyUsers"
    actions   = ["kms:DescribeKey"]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = [for k in flatten([for use in local.seed_uses : local.seed_functions[use.access]]) : aws_iam_role.function[k].arn]
    }
  }
}

# --- data (S3, logs, SNS, SQS, RDS, secrets, Lambda environment) -------------------------

locals {
  source_account = { test = "StringEquals", variable = "aws:SourceAccount", values = [local.account_id] }

  data_key_uses = [
    # Grants from the account's IAM policies, limited to use through the AWS services that
    # store our data; the functions' roles name this key explicitly (iam.tf).
    {
      sid        = "UseThroughAwsServices"
      actions    = ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey*", "kms:ReEncrypt*", "kms:DescribeKey", "kms:CreateGrant"]
      principals = [{ type = "AWS", identifiers = ["arn:${local.partition}:iam::${local.account_id}:root"] }]
      conditions = [
        { test = "StringEquals", variable = "kms:CallerAccount", values = [local.account_id] },
        { test = "StringLike", variable = "kms:ViaService", values = [for s in ["s3", "sqs", "sns", "secretsmanager", "rds", "lambda", "states"] : "${s}.${local.region}.amazonaws.com"] },
      ]
    },
    # AWS services that encrypt our data themselves, each only for this account (or our trail).
    {
      sid        = "CloudWatchLogs"
      actions    = ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"]
      principals = [{ type = "Service", identifiers = ["logs.${local.region}.amazonaws.com"] }]
      conditions = [{ test = "ArnLike", variable = "kms:EncryptionContext:aws:logs:arn", values = ["arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:*"] }]
    },
    # CloudWatch alarms publish to the encrypted SNS topic; EventBridge delivers to the
    # encrypted dead-letter queue.
    {
      sid        = "AlarmsAndEventsPublish"
      actions    = ["kms:Decrypt", "kms:GenerateDataKey*"]
      principals = [{ type = "Service", identifiers = ["cloudwatch.amazonaws.com", "events.amazonaws.com"] }]
      conditions = [local.source_account]
    },
    {
      sid        = "CloudTrailEncryptLogs"
      actions    = ["kms:GenerateDataKey*", "kms:DescribeKey"]
      principals = [{ type = "Service", identifiers = ["cloudtrail.amazonaws.com"] }]
      conditions = [
        { test = "StringLike", variable = "kms:EncryptionContext:aws:cloudtrail:arn", values = ["arn:${local.partition}:cloudtrail:*:${local.account_id}:trail/*"] },
        { test = "StringEquals", variable = "aws:SourceArn", values = [local.trail_arn] },
      ]
    },
    # S3 server access logging and VPC flow logs run as AWS services.
    {
      sid        = "DeliveryServices"
      actions    = ["kms:Decrypt", "kms:GenerateDataKey*"]
      principals = [{ type = "Service", identifiers = ["logging.s3.amazonaws.com", "delivery.logs.amazonaws.com"] }]
      conditions = [local.source_account]
    },
  ]
}

# Both key policies: administration first, then who may use the key and how (key_uses), all
# on "*", which in a key policy is the key itself.
module "key_uses" {
  source   = "./modules/policy-statements"
  for_each = local.key_uses

  statements = [for use in each.value : merge(use, { resources = ["*"] })]
}

data "aws_iam_policy_document" "data_key" {
  source_policy_documents = [data.aws_iam_policy_document.kms_administration.json, module.key_uses["data"].json]
}

# --- attestation (HMAC) ---------------------------------------------------------------------

data "aws_iam_policy_document" "attestation_key" {
  #checkov:skip=CKV_AWS_356:A key policy cannot name its own key ARN: "*" is the documented form, and means this key alone.
  source_policy_documents = [data.aws_iam_policy_document.kms_administration.json, module.key_uses["attestation"].json]

  statement {
    sid       = "DescribeForKeyUsers"
    actions   = ["kms:DescribeKey"]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = [for k in flatten(values(local.attestation_functions)) : aws_iam_role.function[k].arn]
    }
  }
}

resource "aws_kms_key" "attestation" {
  #checkov:skip=CKV_AWS_7:KMS rotates symmetric encryption keys only; an HMAC key cannot be rotated automatically.
  description              = "${local.name}: attests PQFile pool keys (HMAC)"
  key_usage                = "GENERATE_VERIFY_MAC"
  customer_master_key_spec = "HMAC_256"
  enable_key_rotation      = false
  deletion_window_in_days  = var.kms_deletion_window_days
  policy                   = data.aws_iam_policy_document.attestation_key.json
  # As the other keys (below): no administrator may PutKeyPolicy.
  bypass_policy_lockout_safety_check = true
}

resource "aws_kms_alias" "attestation" {
  name          = "alias/${local.name}-attestation"
  target_key_id = aws_kms_key.attestation.key_id
}

# --- the keys ----------------------------------------------------------------------------

locals {
  kms_keys = {
    seeds = { description = "${local.name}: wraps PQFile private-key seeds", policy = data.aws_iam_policy_document.seeds_key.json }
    data  = { description = "${local.name}: S3 objects, logs, topics, queues, database", policy = data.aws_iam_policy_document.data_key.json }
  }
}

resource "aws_kms_key" "this" {
  for_each = local.kms_keys

  description             = each.value.description
  key_usage               = "ENCRYPT_DECRYPT"
  enable_key_rotation     = true
  rotation_period_in_days = 365
  deletion_window_in_days = var.kms_deletion_window_days
  policy                  = each.value.policy
  # The administrators may not PutKeyPolicy (above), so KMS's lockout check would refuse the
  # policy; changing it later takes a break-glass principal.
  bypass_policy_lockout_safety_check = true
}

resource "aws_kms_alias" "this" {
  for_each = aws_kms_key.this

  name          = "alias/${local.name}-${each.key}"
  target_key_id = each.value.key_id
}
