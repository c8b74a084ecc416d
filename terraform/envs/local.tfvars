# The local stack (`make deploy-local`): the emulator at 127.0.0.1:4566 and a throwaway
# PostgreSQL. devstack/terraform.py passes local_endpoint, database_url and
# lambda_package_path (the function zip alone: the emulator runs the handlers from the tree).
environment    = "local"
region         = "us-east-1"
local_endpoint = "http://127.0.0.1:4566"

lambda_package_path = "../build/lambda/pqfile-function.zip"
lambda_layer_path   = ""

# Nothing the emulator cannot serve: no VPC, no RDS, no alarms, no X-Ray daemon.
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

# Each function connects as its own database role (database_users; trust authentication
# locally), so the audit rows name pqfile_fetch, pqfile_select_key, pqfile_encrypt,
# pqfile_store, pqfile_audit_writer, pqfile_record_failure, pqfile_retrieve, pqfile_maintain,
# pqfile_rewrap and pqfile_auditor as in production.
database_url_per_role = true
# No RDS locally: no IAM database authentication, no RDS CA bundle (the throwaway server is
# on the loopback interface).
database_iam_auth      = false
database_ssl_root_cert = ""

# A small pool: the demo fills it with the rotate-keys MaintainPool function before uploading.
key_pool_target = 10
key_pool_floor  = 5

# Retrieve: plaintext deliveries (inline, URL) stay on locally, so the tour works for a
# reader without a recipient key; sealed delivery is still the default for one with a key.
retrieve_plaintext_delivery = true
