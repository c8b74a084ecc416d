# RDS Proxy in front of the database (enable_rds_proxy; AWS only: the emulator has none).
# Its per-role login secrets also serve database_role_passwords, without a proxy (LocalStack
# in Docker, whose postgres requires passwords; docs/OPERATIONS.md "Database logins").
#
# Functions connect to the proxy, not to the instance: each Lambda instance holds one client
# connection (a 15-minute IAM token for its own database role, TLS verified against the
# Amazon root CAs in the zip's CA bundle, scripts/build_lambda), and the proxy multiplexes
# those onto a pool of at most max_connections_percent of the instance's max_connections.
# The pinned provider (5.100) has no IAM-to-database mode for the proxy, so the proxy logs in
# to PostgreSQL with one Secrets Manager secret (user name and password) per database role;
# those roles then authenticate with a password, not rds_iam: the migrate function sets
# them (invocations.tf; docs/OPERATIONS.md "Capacity"). The migrate function keeps its direct connection with the master secret
# (migrations take advisory locks, which would pin a proxy connection anyway).

locals {
  use_rds_proxy = var.create_database && var.enable_rds_proxy
  # database_role_passwords (LocalStack in Docker): no proxy, but the same per-role secrets;
  # each function reads its own role's password (lambda.tf) and logs in with SCRAM.
  # (Whether database_url is set is no secret: nonsensitive lets the roles key for_each.)
  use_role_passwords = !local.use_rds_proxy && nonsensitive(local.has_database_url) && var.database_url_per_role && var.database_role_passwords
  # Every role a function logs in as: each function's own, and the admin function's auditor.
  login_database_users = local.use_rds_proxy || local.use_role_passwords ? toset(concat(
    [for k, u in local.function_database_user : u if u != ""],
    [var.admin_auditor_database_user],
  )) : toset([])
  proxy_database_users = local.use_rds_proxy ? local.login_database_users : toset([])
  # Where functions connect (lambda.tf, admin.tf) and what rds-db:connect names (iam.tf).
  database_endpoint = local.use_rds_proxy ? aws_db_proxy.this[0].endpoint : (
    var.create_database ? aws_db_instance.this[0].address : ""
  )
  # Behind the proxy, pg8000 sends unnamed statements (adapters/postgres/connection.py):
  # named prepared statements would pin every client to one pooled connection.
  database_url_parameters = local.use_rds_proxy ? "${local.database_tls_parameters}&statements=unnamed" : local.database_tls_parameters
  # rds-db:connect resources: dbuser:<instance resource id>/<user>, or dbuser:prx-<id>/<user>
  # behind the proxy (the last part of the proxy's ARN).
  database_connect_id = local.use_rds_proxy ? element(split(":", aws_db_proxy.this[0].arn), 6) : (
    var.create_database ? aws_db_instance.this[0].resource_id : ""
  )
}

# One login per database role, for the proxy or (database_role_passwords) for the functions
# themselves. The password is generated once (AWS's own generator; no random provider
# offline) and never rewritten by a later plan; the migrate function (invocations.tf,
# role_logins) sets it on the role and revokes rds_iam where that role exists.
data "aws_secretsmanager_random_password" "proxy_user" {
  for_each = local.login_database_users

  password_length     = 40
  exclude_punctuation = true
}

resource "aws_secretsmanager_secret" "proxy_user" {
  #checkov:skip=CKV2_AWS_57:A rotation must change the database role's password in the same step (docs/OPERATIONS.md "Capacity", the proxy's logins); no rotation function is deployed yet.
  for_each = local.login_database_users

  name        = "${local.name}/database/${each.key}"
  description = local.use_rds_proxy ? "PQFile: the RDS Proxy's login as database role ${each.key}" : "PQFile: the login of database role ${each.key}"
  kms_key_id  = aws_kms_key.this["data"].arn
  # Locally deleted at once, so a destroy and a new apply on the same emulator can reuse
  # the name (a secret waiting out its recovery window keeps it).
  recovery_window_in_days = local.is_local ? 0 : 7
}

resource "aws_secretsmanager_secret_version" "proxy_user" {
  for_each = local.login_database_users

  secret_id = aws_secretsmanager_secret.proxy_user[each.key].id
  secret_string = jsonencode({
    username = each.key
    password = data.aws_secretsmanager_random_password.proxy_user[each.key].random_password
  })

  lifecycle {
    ignore_changes = [secret_string]
  }
}

# The migrate function (invocations.tf) sets each role's password from its secret.
locals {
  login_secrets = { for u in local.login_database_users : u => aws_secretsmanager_secret.proxy_user[u].arn }
  # database_role_passwords: the login secrets each function reads (its own role's; the
  # admin function's auditor login too; lambda.tf passes them). Behind the proxy, functions
  # use IAM tokens instead.
  function_login_secrets = local.use_role_passwords ? {
    for k, u in local.function_database_user : k => tolist(concat(
      [aws_secretsmanager_secret.proxy_user[u].arn],
      k == local.admin_function ? [aws_secretsmanager_secret.proxy_user[var.admin_auditor_database_user].arn] : [],
    )) if u != ""
  } : {}
}

# database_role_passwords: each function may read its own role's login secret, nothing more
# (the data key's Decrypt through Secrets Manager is in iam.tf's shared statement).
resource "aws_iam_role_policy" "role_login" {
  for_each = toset(keys(local.function_login_secrets))

  name = "read-own-database-login"
  role = aws_iam_role.function[each.key].id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Sid      = "ReadOwnDatabaseLogin"
      Effect   = "Allow"
      Action   = ["secretsmanager:GetSecretValue"]
      Resource = local.function_login_secrets[each.key]
    }]
  })
}

resource "aws_iam_role_policy" "migrate_proxy_logins" {
  count = length(local.login_database_users) > 0 ? 1 : 0

  name = "set-proxy-logins"
  role = aws_iam_role.function[local.migrate_function].id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Sid      = "ReadProxyLogins"
      Effect   = "Allow"
      Action   = ["secretsmanager:GetSecretValue"]
      Resource = [for s in aws_secretsmanager_secret.proxy_user : s.arn]
    }]
  })
}

data "aws_iam_policy_document" "rds_proxy" {
  count = local.use_rds_proxy ? 1 : 0

  statement {
    sid       = "ReadDatabaseLogins"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [for s in aws_secretsmanager_secret.proxy_user : s.arn]
  }

  statement {
    sid       = "DecryptDatabaseLogins"
    actions   = ["kms:Decrypt"]
    resources = [aws_kms_key.this["data"].arn]

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["secretsmanager.${local.region}.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "rds_proxy" {
  count = local.use_rds_proxy ? 1 : 0

  name = "${local.name}-rds-proxy-${local.region}"
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Action    = "sts:AssumeRole"
      Principal = { Service = "rds.amazonaws.com" }
      Condition = { StringEquals = { "aws:SourceAccount" = local.account_id } }
    }]
  })
}

resource "aws_iam_role_policy" "rds_proxy" {
  count = local.use_rds_proxy ? 1 : 0

  name   = "read-database-logins"
  role   = aws_iam_role.rds_proxy[0].id
  policy = data.aws_iam_policy_document.rds_proxy[0].json
}

resource "aws_security_group" "rds_proxy" {
  #checkov:skip=CKV2_AWS_5:Attached to aws_db_proxy.this (vpc_security_group_ids), which checkov does not follow as an attachment.
  count = local.use_rds_proxy ? 1 : 0

  name        = "${local.name}-rds-proxy"
  description = "PQFile RDS Proxy: PostgreSQL from the functions, to the database only"
  vpc_id      = local.vpc_id
}

locals {
  # functions -> proxy -> database, PostgreSQL only.
  proxy_rules = local.use_rds_proxy ? {
    functions_out = { kind = "egress", group = aws_security_group.lambda[0].id, peer = aws_security_group.rds_proxy[0].id, description = "PostgreSQL to the RDS Proxy" }
    proxy_in      = { kind = "ingress", group = aws_security_group.rds_proxy[0].id, peer = aws_security_group.lambda[0].id, description = "PostgreSQL from the functions" }
    proxy_out     = { kind = "egress", group = aws_security_group.rds_proxy[0].id, peer = aws_security_group.database[0].id, description = "PostgreSQL to the database" }
    database_in   = { kind = "ingress", group = aws_security_group.database[0].id, peer = aws_security_group.rds_proxy[0].id, description = "PostgreSQL from the RDS Proxy" }
  } : {}
}

resource "aws_vpc_security_group_egress_rule" "rds_proxy" {
  for_each = { for k, r in local.proxy_rules : k => r if r.kind == "egress" }

  security_group_id            = each.value.group
  description                  = each.value.description
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
  referenced_security_group_id = each.value.peer
}

resource "aws_vpc_security_group_ingress_rule" "rds_proxy" {
  for_each = { for k, r in local.proxy_rules : k => r if r.kind == "ingress" }

  security_group_id            = each.value.group
  description                  = each.value.description
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
  referenced_security_group_id = each.value.peer
}

resource "aws_db_proxy" "this" {
  count = local.use_rds_proxy ? 1 : 0

  name                   = local.name
  engine_family          = "POSTGRESQL"
  role_arn               = aws_iam_role.rds_proxy[0].arn
  vpc_subnet_ids         = local.private_subnet_ids
  vpc_security_group_ids = [aws_security_group.rds_proxy[0].id]
  require_tls            = true
  debug_logging          = false
  # A warm Lambda instance keeps its client connection between invocations; the proxy
  # closes it after this long idle (the function reconnects on its next invocation).
  idle_client_timeout = 900

  dynamic "auth" {
    for_each = local.proxy_database_users

    content {
      description = "database role ${auth.value}"
      auth_scheme = "SECRETS"
      iam_auth    = "REQUIRED"
      secret_arn  = aws_secretsmanager_secret.proxy_user[auth.value].arn
    }
  }

  depends_on = [aws_iam_role_policy.rds_proxy, aws_secretsmanager_secret_version.proxy_user]
}

resource "aws_db_proxy_default_target_group" "this" {
  count = local.use_rds_proxy ? 1 : 0

  db_proxy_name = aws_db_proxy.this[0].name

  connection_pool_config {
    # The capacity model (docs/OPERATIONS.md "Capacity"): the pool the functions share.
    max_connections_percent      = var.rds_proxy_max_connections_percent
    max_idle_connections_percent = floor(var.rds_proxy_max_connections_percent / 2)
    # A burst waits for a pooled connection this long before the function sees an error
    # (TransientError: the workflow retries it).
    connection_borrow_timeout = 30
    # pg8000 uses the unnamed prepared statement: no SET, no named statements, no pinning
    # by the driver (docs/OPERATIONS.md "Capacity"). Nothing to exclude here.
    session_pinning_filters = []
  }
}

resource "aws_db_proxy_target" "this" {
  count = local.use_rds_proxy ? 1 : 0

  db_proxy_name          = aws_db_proxy.this[0].name
  target_group_name      = aws_db_proxy_default_target_group.this[0].name
  db_instance_identifier = aws_db_instance.this[0].identifier
}

variable "enable_rds_proxy" {
  description = "Put an RDS Proxy in front of the database (create_database only; the local emulator has no proxy). Functions connect to it with IAM tokens; the proxy logs in with one Secrets Manager secret per database role."
  type        = bool
  default     = true
}

variable "rds_proxy_max_connections_percent" {
  description = "The proxy's pool: at most this percentage of the instance's max_connections (docs/OPERATIONS.md \"Capacity\"). Leave room for the migrate function and operators."
  type        = number
  default     = 75

  validation {
    condition     = var.rds_proxy_max_connections_percent >= 10 && var.rds_proxy_max_connections_percent <= 90
    error_message = "rds_proxy_max_connections_percent must be between 10 and 90 (the rest is for migrations and operators)."
  }
}

# --- the capacity model (docs/OPERATIONS.md "Capacity") -----------------------------------
#
# Reserved concurrency per function = ceil(capacity_documents_per_second x the step's wall
# time on AWS x capacity_headroom), at least 2. A function's wall time is its measured compute
# (BENCHMARKS.md "Load": the handlers' compute_ms) plus its round trips to S3, KMS and the
# database (estimates in docs/OPERATIONS.md). Each instance holds one client connection to
# the proxy; the proxy lends a pooled database connection per transaction, so the sum of
# reserved concurrency is not bounded by the instance's max_connections, the pool
# (rds_proxy_max_connections_percent) only by transactions in flight. Functions off the
# ingest path get fixed values. var.lambda_reserved_concurrency overrides any of them.
locals {
  # Milliseconds (integers: 0.15 x 100 x 2 in floating point is 30.000000000000004).
  capacity_step_ms = {
    fetch          = 150
    select_key     = 80
    encrypt        = 350
    store          = 250
    audit          = 80
    record_failure = 100
  }
  capacity_fixed = {
    retrieve        = 50
    documents       = 20
    admin           = 5
    audit_verify    = 1
    migrate         = 1
    rotate_maintain = 2
    rotate_plan     = 2
    rotate_rewrap   = var.rewrap_concurrency
    rotate_finish   = 2
    rotate_failure  = 5
    shred           = 5
  }
  reserved_concurrency = merge(
    { for k, ms in local.capacity_step_ms : k => max(2, ceil(var.capacity_documents_per_second * ms * var.capacity_headroom / 1000)) },
    local.capacity_fixed,
    var.lambda_reserved_concurrency,
  )
}

variable "capacity_documents_per_second" {
  description = "Sustained uploads per second the ingest functions' reserved concurrency is sized for (docs/OPERATIONS.md \"Capacity\")."
  type        = number
  default     = 100

  validation {
    condition     = var.capacity_documents_per_second >= 1 && var.capacity_documents_per_second <= 1000
    error_message = "capacity_documents_per_second must be between 1 and 1000."
  }
}

variable "capacity_headroom" {
  description = "Factor over the calculated concurrency (bursts, cold starts, slower steps)."
  type        = number
  default     = 2

  validation {
    condition     = var.capacity_headroom >= 1 && var.capacity_headroom <= 10
    error_message = "capacity_headroom must be between 1 and 10."
  }
}
