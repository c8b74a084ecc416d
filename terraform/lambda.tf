# The functions of docs/CONTRACTS.md: one zip (the pqfile package) shared by all, one
# dependencies layer, one role, log group and failure destination per function.

locals {
  # seed_access: what the function may do with the seeds key ("encrypt", "decrypt", "none").
  # attestation: what it may do with the key-attestation HMAC key ("generate": the maintain
  # function alone; "verify": the functions that select or encrypt to keys; "none").
  functions = merge(local.core_functions, local.query_functions, local.rotation_functions, local.audit_functions, local.digest_functions, local.migrate_functions, local.admin_functions)

  # Invoked directly by users with an identity proof, like retrieve: a document's status
  # and the documents a caller may read (sql/migrations/0017; no S3, no KMS, no events).
  query_functions = {
    documents = {
      handler     = "pqfile.handlers.documents.handler"
      description = "Document status and list for verified callers (identity proof, access rules)"
      seed_access = "none"
      attestation = "none"
    }
  }
  # The functions that verify identity proofs (docs/CONTRACTS.md, "Caller identity proofs").
  proof_functions = ["retrieve", "documents", local.admin_function]

  core_functions = {
    fetch = {
      handler     = "pqfile.handlers.fetch.handler"
      description = "Ingest step FetchDocument: identifies the uploaded object"
      seed_access = "none"
      attestation = "none"
    }
    select_key = {
      handler     = "pqfile.handlers.select_key.handler"
      description = "Ingest step SelectKey: picks a key from the pool (never creates keys)"
      seed_access = "none"
      attestation = "verify"
    }
    encrypt = {
      handler     = "pqfile.handlers.encrypt.handler"
      description = "Ingest step EncryptDocument: streams the upload into a PQF package"
      seed_access = "none"
      attestation = "verify"
    }
    store = {
      handler     = "pqfile.handlers.store.handler"
      description = "Ingest step StoreDocument: commits the document row, deletes the plaintext"
      seed_access = "none"
      attestation = "none"
    }
    audit = {
      handler     = "pqfile.handlers.audit.handler"
      description = "Ingest step WriteAudit: appends to the hash-chained audit log"
      seed_access = "none"
      attestation = "none"
    }
    record_failure = {
      handler     = "pqfile.handlers.record_failure.handler"
      description = "Ingest step RecordFailure: audits the failure, quarantines the upload"
      seed_access = "none"
      attestation = "none"
    }
    retrieve = {
      handler     = "pqfile.handlers.retrieve.handler"
      description = "Decrypts a document on direct invocation"
      seed_access = "decrypt"
      attestation = "none"
    }
  }

  function_names = { for k, _ in local.functions : k => "${local.name}-${replace(k, "_", "-")}" }

  # Local: a full URL. AWS, by default (database_iam_auth, required outside local): no
  # secret, each function connects as its own least-privilege database role
  # (database_users) with a 15-minute IAM token (functions/pqfile/adapters/postgres), TLS
  # verified against the CA bundle in the zip. Only the migrate function (migrate.tf) reads
  # the RDS-managed secret (master user name and password), at run time. Without
  # database_iam_auth (local only, or an existing database's own secret) every function
  # reads the secret.
  database_iam        = var.create_database && var.database_iam_auth
  has_database_url    = !var.create_database && var.database_url != ""
  has_database_secret = (var.create_database && !var.database_iam_auth) || var.database_secret_arn != ""
  database_secret_arn = var.create_database ? aws_db_instance.this[0].master_user_secret[0].secret_arn : var.database_secret_arn
  database_on_aws     = var.create_database || var.database_secret_arn != "" || var.database_host != ""
  # Which functions may read the secret: all of them without IAM authentication, else the
  # migrate function alone.
  secret_functions        = toset([for k, _ in local.functions : k if local.has_database_secret || (k == local.migrate_function && local.database_secret_arn != "")])
  database_tls_parameters = var.database_ssl_root_cert != "" ? "sslmode=verify-full&sslrootcert=${urlencode(var.database_ssl_root_cert)}" : "sslmode=verify-full"
  database_connection = merge(
    var.create_database ? {
      PQFILE_DATABASE_HOST = aws_db_instance.this[0].address
      PQFILE_DATABASE_PORT = tostring(aws_db_instance.this[0].port)
      PQFILE_DATABASE_NAME = aws_db_instance.this[0].db_name
      } : var.database_host != "" ? {
      PQFILE_DATABASE_HOST = var.database_host
      PQFILE_DATABASE_PORT = tostring(var.database_port)
      PQFILE_DATABASE_NAME = var.database_name
    } : {},
    local.database_on_aws ? { PQFILE_DATABASE_SSLMODE = "verify-full" } : {},
    local.database_on_aws && var.database_ssl_root_cert != "" ? { PQFILE_DATABASE_SSLROOTCERT = var.database_ssl_root_cert } : {},
  )
  # The database role of each function (database_users): every function but migrate must
  # have one, no fallback (an empty name fails the precondition of aws_lambda_function.this).
  function_database_user = { for k, _ in local.functions : k => lookup(var.database_users, k, "") if k != local.migrate_function }
  # Per function: its database role, when IAM authentication is on; locally
  # (database_url_per_role) the given URL with the function's role as its user. The migrate
  # function: the secret (or the given URL, as given), and the migrations in the zip.
  function_database = {
    for k, _ in local.functions : k => k == local.migrate_function ? merge(
      contains(local.secret_functions, k) ? { PQFILE_DATABASE_SECRET_ARN = local.database_secret_arn } : {},
      local.is_local ? {} : { PQFILE_MIGRATIONS_DIR = local.lambda_migrations_dir },
      ) : local.database_iam ? {
      PQFILE_DATABASE_URL      = "postgresql://${local.function_database_user[k]}@${local.database_endpoint}:${aws_db_instance.this[0].port}/${aws_db_instance.this[0].db_name}?${local.database_url_parameters}"
      PQFILE_DATABASE_IAM_AUTH = "1"
      } : local.has_database_url && var.database_url_per_role ? {
      PQFILE_DATABASE_URL = replace(var.database_url, "/^([a-z]+://)(?:[^@/]*@)?/", "$${1}${local.function_database_user[k]}@")
    } : {}
  }
  # database_role_passwords (proxy.tf): the login secrets of each function's roles
  # (pqfile.config.DatabaseSettings, AdminSettings).
  function_login_environment = { for k, u in local.function_database_user : k => merge(
    { PQFILE_DATABASE_PASSWORD_SECRET_ARN = aws_secretsmanager_secret.proxy_user[u].arn },
    k == local.admin_function ? { PQFILE_AUDITOR_DATABASE_PASSWORD_SECRET_ARN = aws_secretsmanager_secret.proxy_user[var.admin_auditor_database_user].arn } : {},
  ) if local.use_role_passwords && u != "" }
  # The key-attestation HMAC key, only on the functions that generate or verify attestations.
  function_attestation = {
    for k, f in local.functions : k => f.attestation == "none" ? {} : { PQFILE_ATTESTATION_KEY_ID = aws_kms_key.attestation.arn }
  }

  # The suites whose key pools are maintained: the default, the mapped ones, rotation_suites.
  pool_suites = distinct(concat([var.default_suite], values(var.suite_by_prefix), var.rotation_suites))

  # Every variable the handlers read (functions/pqfile/config/).
  function_environment = merge(
    {
      PQFILE_KMS_KEY_ID            = aws_kms_key.this["seeds"].arn
      PQFILE_UPLOADS_BUCKET        = aws_s3_bucket.this["uploads"].id
      PQFILE_ENCRYPTED_BUCKET      = aws_s3_bucket.this["encrypted"].id
      PQFILE_DEFAULT_SUITE         = var.default_suite
      PQFILE_SUITE_BY_PREFIX       = jsonencode(var.suite_by_prefix)
      PQFILE_SEGMENT_SIZE          = tostring(var.segment_size_bytes)
      PQFILE_PART_SIZE             = tostring(var.part_size_bytes)
      PQFILE_MAX_DOCUMENT_SIZE     = tostring(var.max_document_size_bytes)
      PQFILE_INGEST_WORKERS        = tostring(var.ingest_workers)
      PQFILE_INLINE_LIMIT          = tostring(var.inline_limit_bytes)
      PQFILE_PRESIGN_SECONDS       = tostring(var.presign_seconds)
      PQFILE_RETRIEVALS_KMS_KEY_ID = aws_kms_key.this["data"].arn
      # Key pool policy (functions/pqfile/handlers/rotate.py: MaintainPool refills to it).
      # Every suite ingest may select from is kept full (pqfile.config adds them again).
      PQFILE_ROTATION_SUITES       = join(",", local.pool_suites)
      PQFILE_POOL_TARGET           = tostring(var.key_pool_target)
      PQFILE_POOL_FLOOR            = tostring(var.key_pool_floor)
      PQFILE_KEY_MAX_AGE_DAYS      = tostring(var.key_max_age_days)
      PQFILE_KEY_MAX_DOCUMENTS     = tostring(var.key_max_documents)
      PQFILE_KEY_MAX_BYTES         = tostring(var.key_max_bytes)
      PQFILE_REWRAP_BATCH          = tostring(var.rewrap_batch_size)
      PQFILE_BACKUP_RETENTION_DAYS = tostring(var.db_backup_retention_days)
      PQFILE_REWRAP_CONCURRENCY    = tostring(var.rewrap_concurrency)
      POWERTOOLS_SERVICE_NAME      = "pqfile"
      POWERTOOLS_METRICS_NAMESPACE = var.metrics_namespace
    },
    local.has_database_url ? { PQFILE_DATABASE_URL = var.database_url } : {},
    local.database_connection,
    # Locally: no X-Ray daemon (the SDK stays silent), and the emulator's endpoint: moto's
    # given here; LocalStack injects its own into every function (its gateway as the
    # function's environment reaches it), which a value here would override.
    local.is_local ? { AWS_XRAY_SDK_ENABLED = "false" } : {},
    local.is_local && var.local_emulator == "moto" ? { AWS_ENDPOINT_URL = var.local_endpoint } : {},
  )

  layer_arns = var.lambda_layer_path == "" ? [] : [aws_lambda_layer_version.deps[0].arn]
}

resource "aws_lambda_layer_version" "deps" {
  count = var.lambda_layer_path == "" ? 0 : 1

  layer_name               = "${local.name}-deps"
  description              = "PQFile runtime dependencies (manylinux ${var.lambda_architecture == "arm64" ? "aarch64" : "x86_64"} wheels)"
  filename                 = var.lambda_layer_path
  source_code_hash         = filebase64sha256(var.lambda_layer_path)
  compatible_runtimes      = [var.lambda_runtime]
  compatible_architectures = [var.lambda_architecture]
}

resource "aws_lambda_function" "this" {
  #checkov:skip=CKV_AWS_272:Code signing needs an AWS Signer profile per account; the zips are reproducible and their hash is pinned by source_code_hash.
  #checkov:skip=CKV_AWS_117:VPC attachment is on whenever a VPC is created or given (dev, prod); only the local emulator runs without one.
  for_each = local.functions

  function_name = local.function_names[each.key]
  description   = each.value.description
  role          = aws_iam_role.function[each.key].arn
  handler       = each.value.handler
  runtime       = var.lambda_runtime
  architectures = [var.lambda_architecture]
  memory_size   = lookup(var.lambda_memory_mb, each.key, 512)
  timeout       = lookup(var.lambda_timeout_seconds, each.key, 60)
  # The capacity model (proxy.tf, docs/OPERATIONS.md "Capacity"): sized for the sustained
  # rate, capped so a runaway loop cannot take the account's concurrency.
  reserved_concurrent_executions = lookup(local.reserved_concurrency, each.key, 5)

  filename         = var.lambda_package_path
  source_code_hash = filebase64sha256(var.lambda_package_path)
  layers           = local.layer_arns
  kms_key_arn      = aws_kms_key.this["data"].arn

  # SnapStart (snapstart.tf): a published version per code change, restored from a snapshot.
  publish = contains(local.snapstart_functions, each.key)

  dynamic "snap_start" {
    for_each = contains(local.snapstart_functions, each.key) ? [1] : []

    content {
      apply_on = "PublishedVersions"
    }
  }

  environment {
    variables = merge(
      local.function_environment,
      contains(local.secret_functions, each.key) ? { PQFILE_DATABASE_SECRET_ARN = local.database_secret_arn } : {},
      local.function_database[each.key],
      # database_role_passwords (proxy.tf): the login secrets of the function's roles.
      lookup(local.function_login_environment, each.key, {}),
      local.function_attestation[each.key],
      # Completion events: on for the functions allowed to put them (eventbridge.tf).
      { PQFILE_EVENT_BUS = contains(local.event_functions, each.key) ? "default" : "off" },
      # Verified callers (docs/CONTRACTS.md, "Caller identity proofs"); variables in tenants.tf.
      contains(local.proof_functions, each.key) ? {
        PQFILE_AUDIENCE              = local.audience
        PQFILE_STS_ENDPOINT_URL      = var.sts_endpoint_url
        PQFILE_STS_PLAIN_HTTP_HOST   = var.sts_plain_http_host
        PQFILE_PROOF_MAX_AGE_SECONDS = "300"
        PQFILE_STS_TIMEOUT_SECONDS   = "5"
      } : {},
      # Retrieve's deliveries (docs/OPERATIONS.md, "Retrieval"): plaintext only where allowed.
      each.key == "retrieve" ? {
        PQFILE_PLAINTEXT_DELIVERY     = tostring(var.retrieve_plaintext_delivery)
        PQFILE_SEALED_PRESIGN_SECONDS = tostring(var.sealed_presign_seconds)
      } : {},
      # The digest-signing function's key and bucket (audit_digests.tf).
      each.key == local.digest_function ? {
        PQFILE_DIGEST_BUCKET            = aws_s3_bucket.audit_digests.id
        PQFILE_DIGEST_KEY_ARN           = aws_kms_key.audit_digests.arn
        PQFILE_DIGEST_SIGNING_ALGORITHM = local.digest_signing_algorithm
      } : {},
      # The admin function's read-only commands run as the auditor; `keys rotate` starts
      # rotate-keys (admin.tf).
      each.key == local.admin_function ? {
        PQFILE_AUDITOR_DATABASE_URL   = lookup(local.admin_auditor_url, "PQFILE_AUDITOR_DATABASE_URL", "")
        PQFILE_ROTATION_STATE_MACHINE = local.admin_rotation_arn
      } : {},
    )
  }

  tracing_config {
    mode = var.enable_xray ? "Active" : "PassThrough"
  }

  dead_letter_config {
    target_arn = aws_sqs_queue.failures["functions"].arn
  }

  dynamic "vpc_config" {
    for_each = local.use_vpc ? [1] : []

    content {
      subnet_ids         = local.private_subnet_ids
      security_group_ids = [aws_security_group.lambda[0].id]
    }
  }

  logging_config {
    log_format = "JSON"
    log_group  = module.log_groups["function"].names[each.key]
  }

  lifecycle {
    precondition {
      condition     = each.key == local.migrate_function || lookup(local.function_database_user, each.key, "") != ""
      error_message = "database_users names no database role for the function ${each.key}: every function needs its own (no fallback role)."
    }

    precondition {
      condition     = local.is_local || !var.create_database || var.database_iam_auth
      error_message = "database_iam_auth must be true outside the local stack: only the migrate function may hold the master credentials."
    }

    precondition {
      condition     = local.is_local || !local.database_on_aws || var.database_ssl_root_cert != ""
      error_message = "database_ssl_root_cert must name the RDS CA bundle in the function zip outside the local stack (sslmode=verify-full)."
    }
  }

  depends_on = [
    aws_iam_role_policy.function,
    module.log_groups,
  ]
}

# Asynchronous invocations (retrieve with --invocation-type Event, retries) that still
# fail land in the failure queue with their request and error.
resource "aws_lambda_function_event_invoke_config" "this" {
  for_each = local.functions

  function_name                = aws_lambda_function.this[each.key].function_name
  maximum_retry_attempts       = 2
  maximum_event_age_in_seconds = 3600

  destination_config {
    on_failure {
      destination = aws_sqs_queue.failures["functions"].arn
    }
  }
}
