# The migrate function: applies sql/migrations (shipped in the function zip) as the database
# owner. It is the ONE function that may read the master credentials, and only at run time
# from the RDS-managed secret (PQFILE_DATABASE_SECRET_ARN; tests/terraform/test_credentials.py
# asserts no other function's configuration names that secret or a password). The migrations
# create the per-function roles, grant them rds_iam and own the SECURITY DEFINER functions.
# Terraform invokes it whenever sql/migrations change (invocations.tf; docs/OPERATIONS.md,
# "First deploy, hands off").

locals {
  migrate_function = "migrate"

  migrate_functions = {
    migrate = {
      handler     = "pqfile.handlers.migrate.handler"
      description = "Applies the schema migrations as the database owner (invoked by Terraform)"
      seed_access = "none"
      attestation = "none"
    }
  }

  # Where scripts/build_lambda puts the migrations inside the zip (/var/task is its root).
  lambda_migrations_dir = "/var/task/sql/migrations"
}
