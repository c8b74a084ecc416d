# A shared development account: the full production shape, smaller and disposable.
environment = "dev"
region      = "eu-west-1"

lambda_package_path = "../build/lambda/pqfile-function.zip"
lambda_layer_path   = "../build/lambda/pqfile-deps-layer.zip"

create_vpc         = true
vpc_cidr           = "10.41.0.0/16"
availability_zones = ["eu-west-1a", "eu-west-1b"]

create_database          = true
db_instance_class        = "db.t4g.small"
db_allocated_storage_gb  = 20
db_multi_az              = false
db_deletion_protection   = false
db_skip_final_snapshot   = true
db_backup_retention_days = 3
# Each function connects as its own database role with IAM tokens; only the migrate
# function reads the master secret (docs/OPERATIONS.md, "dev and prod").
database_iam_auth = true

force_destroy_buckets    = true
kms_deletion_window_days = 7
log_retention_days       = 30

# A small account: the ingest functions' reserved concurrency comes from the capacity model
# sized for 10 documents/s (fetch 3, select_key 2, encrypt 7, store 5, audit 2,
# record_failure 2; docs/OPERATIONS.md "Capacity"), not from per-function overrides.
capacity_documents_per_second = 10

alarm_email_addresses = []

# Retrieve: plaintext deliveries (inline, URL) stay on in dev for readers without a
# recipient key; sealed delivery is the default for readers with one.
retrieve_plaintext_delivery = true
