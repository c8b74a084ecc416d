# The admin function: operator commands (`pqfile keys|access|audit --stack DIR`) for a
# deployment whose database sits in private subnets (docs/OPERATIONS.md, "Operator commands
# on AWS"). It verifies the caller's identity proof exactly as retrieve does (the caller's
# own signed sts:GetCallerIdentity, sent to the one configured STS endpoint: no IAM
# permission of its own), requires an `operate` access rule for the verified principal and
# audits every request under that principal. Its role holds no S3, no KMS key use beyond the
# data key through services (shared statement), no invoke; it may start and describe
# rotate-keys (`keys rotate`) and put `PQFile Key Revoked` (`keys revoke --now`;
# eventbridge.tf); its two database logins,
# pqfile_admin_function (its own role, sql/migrations/0018: changes and its audit rows, the
# verified principal as actor) and pqfile_auditor for reads (docs/KEYS.md, "Roles and
# grants", "The admin function's actor").

locals {
  admin_function = "admin"

  admin_functions = {
    admin = {
      handler     = "pqfile.handlers.admin.handler"
      description = "Operator commands (keys, access, audit) for callers with an operate rule"
      seed_access = "none"
      attestation = "none"
    }
  }

  # rotate-keys, named rather than referenced: the workflow invokes functions of the same
  # for_each resource, so a reference from the functions' environment would be a cycle.
  admin_rotation_arn = "arn:${local.partition}:states:${local.region}:${local.account_id}:stateMachine:${local.rotate_keys_name}"

  # The admin function's second database login (its read-only commands).
  admin_auditor_url = local.database_iam ? {
    PQFILE_AUDITOR_DATABASE_URL = "postgresql://${var.admin_auditor_database_user}@${local.database_endpoint}:${aws_db_instance.this[0].port}/${aws_db_instance.this[0].db_name}?${local.database_url_parameters}"
    } : local.has_database_url && var.database_url_per_role ? {
    PQFILE_AUDITOR_DATABASE_URL = replace(var.database_url, "/^([a-z]+://)(?:[^@/]*@)?/", "$${1}${var.admin_auditor_database_user}@")
    } : local.has_database_url ? {
    PQFILE_AUDITOR_DATABASE_URL = var.database_url
  } : {}
}

variable "admin_auditor_database_user" {
  description = "Database role the admin function's read-only commands (keys status, access list, audit verify/tail, keys rotate --dry-run) connect as; changes use database_users.admin (pqfile_admin_function)."
  type        = string
  default     = "pqfile_auditor"

  validation {
    condition     = can(regex("^[a-z_][a-z0-9_]{0,62}$", var.admin_auditor_database_user))
    error_message = "admin_auditor_database_user must be a PostgreSQL role name."
  }
}

# IAM authentication as the auditor too (the function's own role is in iam.tf).
resource "aws_iam_role_policy" "admin_auditor_login" {
  count = local.database_iam ? 1 : 0

  name = "pqfile-admin-auditor-login"
  role = aws_iam_role.function[local.admin_function].id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Sid      = "ConnectAsAuditor"
      Effect   = "Allow"
      Action   = ["rds-db:connect"]
      Resource = ["arn:${local.partition}:rds-db:${local.region}:${local.account_id}:dbuser:${local.database_connect_id}/${var.admin_auditor_database_user}"]
    }]
  })
}

# `pqfile keys rotate --stack`: start rotate-keys and follow that execution, nothing else.
resource "aws_iam_role_policy" "admin_rotation" {
  name = "pqfile-admin-rotation"
  role = aws_iam_role.function[local.admin_function].id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid      = "StartRotation"
        Effect   = "Allow"
        Action   = ["states:StartExecution"]
        Resource = [aws_sfn_state_machine.workflow["rotate-keys"].arn]
      },
      {
        Sid      = "FollowRotation"
        Effect   = "Allow"
        Action   = ["states:DescribeExecution"]
        Resource = ["arn:${local.partition}:states:${local.region}:${local.account_id}:execution:${local.rotate_keys_name}:*"]
      },
    ]
  })
}

# What an operator's IAM principal needs besides an `operate` rule: invoking this function.
data "aws_iam_policy_document" "operator" {
  statement {
    sid       = "InvokeAdmin"
    actions   = ["lambda:InvokeFunction"]
    resources = [aws_lambda_function.this[local.admin_function].arn]
  }
}

resource "aws_iam_policy" "operator" {
  name        = "${local.name}-operator"
  description = "Invoke the admin function (what runs is decided by pqfile operate rules)"
  policy      = data.aws_iam_policy_document.operator.json
}
