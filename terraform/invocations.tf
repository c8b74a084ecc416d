# First deploy, hands off: Terraform itself migrates the database and fills the key pool.
#
# The database sits in private subnets with no bastion, so nothing outside the VPC can run
# the migrations. Terraform invokes the migrate function (migrate.tf; inside the VPC, the
# only holder of the master credentials) whenever the migrations change, and then the
# rotate-keys MaintainPool function (rotation.tf), so an apply on an empty account leaves
# the schema current, every database role with its grants and rds_iam, and a full pool.
#
# Keyed on a checksum of sql/migrations (the same files scripts/build_lambda ships in the
# zip): an apply with unchanged migrations invokes nothing. A function error fails the
# apply with the function's errorType and errorMessage (the provider prints the payload).
# Break glass (docs/OPERATIONS.md, "First deploy"): `terraform apply
# -replace=aws_lambda_invocation.migrate` runs it again; so does `aws lambda invoke`.

locals {
  # terraform/../sql/migrations; devstack/terraform.py copies it next to its working copy.
  migrations_source_dir = "${path.module}/../sql/migrations"
  migration_files       = sort(fileset(local.migrations_source_dir, "*.sql"))
  migrations_checksum = sha256(join("\n", [
    for f in local.migration_files : "${f} ${filesha256("${local.migrations_source_dir}/${f}")}"
  ]))

  # What the pool fill depends on besides the schema: a new suite or a larger target fills
  # again at once instead of waiting for the next scheduled rotate-keys run.
  pool_fill_settings = jsonencode({
    suites = local.pool_suites
    target = var.key_pool_target
    floor  = var.key_pool_floor
  })
}

resource "aws_lambda_invocation" "migrate" {
  function_name = aws_lambda_function.this[local.migrate_function].function_name
  # Password logins (proxy.tf: the RDS Proxy, or database_role_passwords): the roles get
  # their secrets' passwords and leave rds_iam.
  input = jsonencode(length(local.login_secrets) > 0 ? { role_logins = local.login_secrets } : {})

  # CREATE_ONLY (the default): invoked when created or replaced, never on destroy.
  triggers = {
    migrations = local.migrations_checksum
    # The roles only (known at plan time): a secret's ARN changes only with the secret.
    logins = join(",", sort(local.login_database_users))
  }

  lifecycle {
    precondition {
      condition     = length(local.migration_files) > 0
      error_message = "No migrations under ${local.migrations_source_dir}: apply from a checkout that has sql/migrations next to terraform/."
    }
  }

  depends_on = [
    aws_db_instance.this,
    aws_iam_role_policy.function,
    # What a function in the VPC needs before it reaches the database, KMS and S3.
    aws_vpc_endpoint.s3,
    aws_vpc_endpoint.interface,
    aws_vpc_security_group_egress_rule.lambda,
    aws_vpc_security_group_ingress_rule.from_lambda,
    aws_iam_role_policy_attachment.function_vpc,
    aws_iam_role_policy.migrate_proxy_logins,
    aws_secretsmanager_secret_version.proxy_user,
  ]
}

resource "aws_lambda_invocation" "pool_fill" {
  function_name = aws_lambda_function.this["rotate_maintain"].function_name
  input         = jsonencode({})

  triggers = {
    migrations = local.migrations_checksum
    settings   = local.pool_fill_settings
  }

  # After the schema (the pool lives in it) and after the keys' policies let it encrypt seeds.
  depends_on = [
    aws_lambda_invocation.migrate,
    aws_kms_key.this,
    aws_kms_key.attestation,
    aws_iam_role_policy.function,
    # What a function in the VPC needs before it reaches the database, KMS and S3.
    aws_vpc_endpoint.s3,
    aws_vpc_endpoint.interface,
    aws_vpc_security_group_egress_rule.lambda,
    aws_vpc_security_group_ingress_rule.from_lambda,
    aws_iam_role_policy_attachment.function_vpc,
  ]
}
