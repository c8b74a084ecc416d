# Production. Replace the placeholder values (marked CHANGE ME) with the account's own;
# the remote state settings live in envs/prod.s3.tfbackend.
environment = "prod"
region      = "eu-west-1"

lambda_package_path = "../build/lambda/pqfile-function.zip"
lambda_layer_path   = "../build/lambda/pqfile-deps-layer.zip"

# CHANGE ME: the roles that administer (never use) the KMS keys. Include the role that
# runs Terraform, or the key policy locks it out. Administrators may neither change a key
# policy nor create grants: a key policy change is applied as a break-glass role, listed
# here only for that apply (docs/OPERATIONS.md, "Break glass: key policies").
kms_admin_role_arns = ["arn:aws:iam::123456789012:role/pqfile-platform-admin"]
# kms_break_glass_role_arns = ["arn:aws:iam::123456789012:role/pqfile-break-glass"]

create_vpc         = true
vpc_cidr           = "10.40.0.0/16"
availability_zones = ["eu-west-1a", "eu-west-1b", "eu-west-1c"]
# To use an existing VPC instead:
# create_vpc              = false
# vpc_id                  = "vpc-0123456789abcdef0"
# private_subnet_ids      = ["subnet-0123456789abcdef0", "subnet-0123456789abcdef1"]
# private_route_table_ids = ["rtb-0123456789abcdef0"]

create_database          = true
db_instance_class        = "db.m7g.large"
db_allocated_storage_gb  = 100
db_multi_az              = true
db_deletion_protection   = true
db_skip_final_snapshot   = false
db_backup_retention_days = 35
# Each function connects as its own database role with IAM tokens; no function holds the
# master password but the migrate function, which reads the secret at run time
# (docs/OPERATIONS.md, "dev and prod", step 1).
database_iam_auth = true

force_destroy_buckets    = false
enable_access_logging    = true
kms_deletion_window_days = 30
log_retention_days       = 400

key_pool_floor = 50

# CHANGE ME: who is paged.
alarm_email_addresses = ["security-oncall@example.com"]

# Audit digests (audit_digests.tf): nobody, root included, deletes one before its retention ends.
audit_digest_lock_mode = "COMPLIANCE"

tags = {
  CostCenter         = "security-platform"
  DataClassification = "confidential"
}

# Retrieve: sealed delivery only; no plaintext leaves the function (docs/OPERATIONS.md,
# "Retrieval"). Every reader registers a recipient key.
retrieve_plaintext_delivery = false
