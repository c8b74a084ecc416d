# LocalStack (issue 17): the same root and functions as AWS, applied with `tflocal` by
# scripts/deploy_localstack.py (`make deploy-localstack`: LocalStack in Docker on :4566;
# `make test-localstack`: LocalStack on the host, devstack/localstack). The script passes
# local_endpoint, database_url, lambda_package_path, lambda_layer_path and
# lambda_architecture (the machine's: LocalStack runs the functions on it).
environment    = "localstack"
region         = "us-east-1"
local_endpoint = "http://127.0.0.1:4566"
# LocalStack injects AWS_ENDPOINT_URL into every function itself (terraform/lambda.tf).
local_emulator = "localstack"

lambda_package_path = "../build/localstack/pqfile-function.zip"
lambda_layer_path   = "../build/localstack/pqfile-deps-layer.zip"

# Nothing LocalStack (community) serves for us: no VPC, no RDS, no alarms, no X-Ray daemon.
create_vpc            = false
create_vpc_endpoints  = false
create_database       = false
create_alarms         = false
enable_xray           = false
enable_access_logging = false
create_cloudtrail     = false

force_destroy_buckets    = true
kms_deletion_window_days = 7
log_retention_days       = 1
# Governance mode: `tflocal destroy` may delete the audit digests (prod keeps COMPLIANCE).
audit_digest_lock_mode = "GOVERNANCE"

# Each function connects as its own database role, as in production.
database_url_per_role  = true
database_iam_auth      = false
database_ssl_root_cert = ""

key_pool_target = 10
key_pool_floor  = 5
