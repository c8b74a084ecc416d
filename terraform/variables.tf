# ---------------------------------------------------------------------------------------
# Environment
# ---------------------------------------------------------------------------------------
variable "environment" {
  description = "Environment name (local, dev, prod, ...); part of every resource name."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,15}$", var.environment))
    error_message = "environment must be 2-16 characters: lower-case letters, digits, hyphens."
  }
}

variable "name_prefix" {
  description = "Prefix of every resource name."
  type        = string
  default     = "pqfile"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,19}$", var.name_prefix))
    error_message = "name_prefix must be 2-20 characters: lower-case letters, digits, hyphens."
  }
}

variable "region" {
  description = "AWS region of the stack."
  type        = string
  default     = "us-east-1"

  validation {
    condition     = can(regex("^[a-z]{2}(-gov)?-[a-z]+-[0-9]$", var.region))
    error_message = "region must look like an AWS region, for example eu-west-1."
  }
}

variable "tags" {
  description = "Extra tags applied to every resource (merged into the provider's default_tags)."
  type        = map(string)
  default     = {}
}

variable "local_endpoint" {
  description = "Endpoint of the local AWS emulator (for example http://127.0.0.1:4566); empty for real AWS."
  type        = string
  default     = ""

  validation {
    condition     = var.local_endpoint == "" || can(regex("^https?://", var.local_endpoint))
    error_message = "local_endpoint must be empty or an http(s) URL."
  }
}

variable "local_emulator" {
  description = "Which local emulator local_endpoint names: \"moto\" (the devstack; every function gets AWS_ENDPOINT_URL = local_endpoint) or \"localstack\" (LocalStack injects AWS_ENDPOINT_URL itself, pointing where its Lambdas reach it: a hard-coded 127.0.0.1 would point a Lambda container back at itself). Ignored without local_endpoint."
  type        = string
  default     = "moto"

  validation {
    condition     = contains(["moto", "localstack"], var.local_emulator)
    error_message = "local_emulator must be moto or localstack."
  }
}

# ---------------------------------------------------------------------------------------
# Lambda packages (built by scripts/build_lambda, never by Terraform)
# ---------------------------------------------------------------------------------------
variable "lambda_package_path" {
  description = "Path of the function zip (pqfile package) built by scripts/build_lambda."
  type        = string
  default     = "../build/lambda/pqfile-function.zip"

  validation {
    condition     = can(regex("\\.zip$", var.lambda_package_path))
    error_message = "lambda_package_path must name a .zip file."
  }
}

variable "lambda_layer_path" {
  description = "Path of the dependencies layer zip built by scripts/build_lambda; empty for no layer (local stack)."
  type        = string
  default     = "../build/lambda/pqfile-deps-layer.zip"

  validation {
    condition     = var.lambda_layer_path == "" || can(regex("\\.zip$", var.lambda_layer_path))
    error_message = "lambda_layer_path must be empty or name a .zip file."
  }
}

variable "lambda_architecture" {
  description = "Instruction set of the functions and their layer: arm64 on AWS (Graviton); LocalStack runs the machine's own (x86_64 on an x86-64 host: scripts/build_lambda --architecture)."
  type        = string
  default     = "arm64"

  validation {
    condition     = contains(["arm64", "x86_64"], var.lambda_architecture)
    error_message = "lambda_architecture must be arm64 or x86_64."
  }
}

variable "lambda_runtime" {
  description = "Lambda runtime; the layer's wheels are built for this CPython version."
  type        = string
  default     = "python3.12"

  validation {
    condition     = contains(["python3.12", "python3.13"], var.lambda_runtime)
    error_message = "lambda_runtime must be python3.12 or python3.13."
  }
}

variable "lambda_memory_mb" {
  description = "Memory of each function, MiB (map keyed by function; missing keys use 512)."
  type        = map(number)
  default     = { encrypt = 1024, retrieve = 1024, rotate_rewrap = 1024 }

  validation {
    condition     = alltrue([for v in values(var.lambda_memory_mb) : v >= 128 && v <= 10240])
    error_message = "Lambda memory must be between 128 and 10240 MiB."
  }
}

variable "lambda_timeout_seconds" {
  description = "Timeout of each function, seconds (map keyed by function; missing keys use 60). Keep each at most its Task's TimeoutSeconds in statemachines/."
  type        = map(number)
  default     = { encrypt = 900, store = 120, retrieve = 300, rotate_maintain = 300, rotate_plan = 120, rotate_rewrap = 900, rotate_finish = 120, shred = 900, audit_verify = 900, audit_digest = 300, migrate = 900 }

  validation {
    condition     = alltrue([for v in values(var.lambda_timeout_seconds) : v >= 1 && v <= 900])
    error_message = "Lambda timeouts must be between 1 and 900 seconds."
  }
}

variable "lambda_reserved_concurrency" {
  description = "Reserved concurrency overrides (map keyed by function); the others come from the capacity model in proxy.tf (docs/OPERATIONS.md \"Capacity\")."
  type        = map(number)
  default     = {}

  validation {
    condition     = alltrue([for v in values(var.lambda_reserved_concurrency) : v >= 1 && v <= 1000])
    error_message = "Reserved concurrency must be between 1 and 1000."
  }
}

variable "log_retention_days" {
  description = "Retention of every CloudWatch log group, days."
  type        = number
  default     = 365

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be a value CloudWatch Logs accepts (1, 3, 5, 7, 14, 30, 60, 90, ... 3653)."
  }
}

variable "enable_xray" {
  description = "Active X-Ray tracing on the functions and the state machine."
  type        = bool
  default     = true
}

# ---------------------------------------------------------------------------------------
# Pipeline settings passed to the handlers (docs/CONTRACTS.md)
# ---------------------------------------------------------------------------------------
variable "default_suite" {
  description = "KEM suite of new documents: xwing (hybrid, default), mlkem768 (FIPS 203 only) or mlkem1024 (FIPS 203, CNSA 2.0)."
  type        = string
  default     = "xwing"

  validation {
    condition     = contains(["xwing", "mlkem768", "mlkem1024"], var.default_suite)
    error_message = "default_suite must be xwing, mlkem768 or mlkem1024."
  }
}

variable "suite_by_prefix" {
  description = "KEM suite per upload prefix, relative to uploads/ (tenant/ or tenant/folder/): the longest prefix matching an upload's key chooses its suite, other uploads get default_suite. Each suite named here gets its key pool maintained. Example: { \"acme/\" = \"mlkem1024\" }."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for s in values(var.suite_by_prefix) : contains(["xwing", "mlkem768", "mlkem1024"], s)])
    error_message = "suite_by_prefix: every suite must be xwing, mlkem768 or mlkem1024."
  }

  validation {
    condition     = alltrue([for p in keys(var.suite_by_prefix) : can(regex("^[A-Za-z0-9][A-Za-z0-9._-]{0,62}(/[^[:cntrl:]]{0,1000})?$", p)) && !startswith(p, "uploads/")])
    error_message = "suite_by_prefix: every prefix is relative to uploads/ and starts with (the start of) a tenant name: \"acme/\", \"acme/cnsa/\", not \"uploads/acme/\"."
  }

  validation {
    condition     = length(var.suite_by_prefix) <= 100 && length(jsonencode(var.suite_by_prefix)) <= 1024
    error_message = "suite_by_prefix: at most 100 prefixes and 1024 characters of JSON (it is a Lambda environment variable; all of them share 4 KB)."
  }
}

variable "segment_size_bytes" {
  description = "Body segment size of new packages, bytes."
  type        = number
  default     = 1048576

  validation {
    condition     = var.segment_size_bytes >= 1024 && var.segment_size_bytes <= 16777216
    error_message = "segment_size_bytes must be between 1 KiB and 16 MiB."
  }
}

variable "part_size_bytes" {
  description = "Multipart part size of encrypted uploads, bytes (bounds the encrypt step's buffer)."
  type        = number
  default     = 8388608

  validation {
    condition     = var.part_size_bytes >= 5242880 && var.part_size_bytes <= 134217728
    error_message = "part_size_bytes must be between 5 MiB (the S3 minimum) and 128 MiB."
  }
}

variable "max_document_size_bytes" {
  description = "Largest upload the pipeline accepts, bytes. The default, 24 GiB, is what one encrypt function (1,024 MB, 900 s) streams on the sequential path, measured and scaled (BENCHMARKS.md, \"Ingest size limit\"); raise it only with the encrypt function's memory and after measuring."
  type        = number
  default     = 25769803776

  validation {
    condition     = var.max_document_size_bytes > 0
    error_message = "max_document_size_bytes must be positive."
  }
}

variable "ingest_workers" {
  description = "Worker threads the encrypt function uses for the parts of one multi-part upload (1: the sequential stream; docs/DESIGN.md, \"Parallel ingest\"). The parts wait mostly on S3, so two overlap well even at the default 1,024 MB (about 0.58 vCPU); memory is about workers x (part size + 2 segments)."
  type        = number
  default     = 2

  validation {
    condition     = var.ingest_workers >= 1 && var.ingest_workers <= 64 && floor(var.ingest_workers) == var.ingest_workers
    error_message = "ingest_workers is a whole number from 1 to 64."
  }
}

variable "inline_limit_bytes" {
  description = "Largest plaintext retrieve returns inline; larger ones go through a presigned URL."
  type        = number
  default     = 4194304

  validation {
    condition     = var.inline_limit_bytes >= 0 && var.inline_limit_bytes <= 4194304
    error_message = "inline_limit_bytes must be between 0 and 4 MiB (Lambda's 6 MB response cap)."
  }
}

variable "presign_seconds" {
  description = "Lifetime of presigned retrieval URLs, seconds."
  type        = number
  default     = 300

  validation {
    condition     = var.presign_seconds >= 1 && var.presign_seconds <= 3600
    error_message = "presign_seconds must be between 1 and 3600."
  }
}

variable "retrieve_plaintext_delivery" {
  description = "Serve plaintext retrieve deliveries (inline base64, or a decrypted copy under retrievals/ by presigned URL) to readers without a recipient key. Off: sealed delivery only (docs/OPERATIONS.md, \"Retrieval\"). Off by default and in prod."
  type        = bool
  default     = false
}

variable "sealed_presign_seconds" {
  description = "Lifetime of the presigned GET of the stored package in a sealed retrieve delivery, seconds."
  type        = number
  default     = 300

  validation {
    condition     = var.sealed_presign_seconds >= 1 && var.sealed_presign_seconds <= 3600
    error_message = "sealed_presign_seconds must be between 1 and 3600."
  }
}

variable "key_pool_target" {
  description = "Active keys per suite the pool is refilled to."
  type        = number
  default     = 100

  validation {
    condition     = var.key_pool_target >= 1 && var.key_pool_target <= 10000
    error_message = "key_pool_target must be between 1 and 10000."
  }
}

variable "key_pool_floor" {
  description = "Refill below this many active keys per suite; the key-pool alarm fires below it too."
  type        = number
  default     = 80

  validation {
    condition     = var.key_pool_floor >= 1
    error_message = "key_pool_floor must be at least 1."
  }
}

variable "key_max_age_days" {
  description = "Keys older than this are queued for rotation."
  type        = number
  default     = 30

  validation {
    condition     = var.key_max_age_days >= 1
    error_message = "key_max_age_days must be at least 1."
  }
}

variable "key_max_documents" {
  description = "Keys that encrypted this many documents are queued for rotation."
  type        = number
  default     = 1000000
}

variable "key_max_bytes" {
  description = "Keys that encrypted this many bytes are queued for rotation."
  type        = number
  default     = 1099511627776
}

variable "rotation_suites" {
  description = "KEM suites whose pools the rotation workflow maintains, besides default_suite and the suites of suite_by_prefix (always maintained)."
  type        = list(string)
  default     = ["xwing"]

  validation {
    condition     = length(var.rotation_suites) > 0 && alltrue([for s in var.rotation_suites : contains(["xwing", "mlkem768", "mlkem1024"], s)])
    error_message = "rotation_suites must list xwing, mlkem768 and/or mlkem1024."
  }
}

variable "rewrap_batch_size" {
  description = "Documents per rewrap batch manifest of the rotation workflow (one distributed Map run; at most 2000 keeps the Map's collected output under the 256 KiB state limit)."
  type        = number
  default     = 2000

  validation {
    condition     = var.rewrap_batch_size >= 1 && var.rewrap_batch_size <= 2000
    error_message = "rewrap_batch_size must be between 1 and 2000."
  }
}

variable "rewrap_concurrency" {
  description = "Rewrap child executions the rotation workflow's distributed Map runs at once (each holds one database connection: keep it under the database's connection limit)."
  type        = number
  default     = 100

  validation {
    condition     = var.rewrap_concurrency >= 1 && var.rewrap_concurrency <= 1000
    error_message = "rewrap_concurrency must be between 1 and 1000."
  }
}

variable "enable_rotation_schedule" {
  description = "Start the rotate-keys workflow on rotation_schedule (off: run it by hand)."
  type        = bool
  default     = true
}

variable "rotation_schedule" {
  description = "EventBridge schedule of the rotate-keys workflow."
  type        = string
  default     = "rate(1 day)"

  validation {
    condition     = can(regex("^(rate|cron)\\(.+\\)$", var.rotation_schedule))
    error_message = "rotation_schedule must be a rate(...) or cron(...) expression."
  }
}

variable "enable_audit_verify_schedule" {
  description = "Run the audit chain verification (audit_verify function) on audit_verify_schedule."
  type        = bool
  default     = true
}

variable "audit_verify_schedule" {
  description = "EventBridge schedule of the audit chain verification; keep it at most the audit-verification-failed alarm's period (1 hour)."
  type        = string
  default     = "rate(1 hour)"

  validation {
    condition     = can(regex("^(rate|cron)\\(.+\\)$", var.audit_verify_schedule))
    error_message = "audit_verify_schedule must be a rate(...) or cron(...) expression."
  }
}

variable "metrics_namespace" {
  description = "CloudWatch namespace of the application metrics (key pool size, audit verification)."
  type        = string
  default     = "PQFile"
}

# ---------------------------------------------------------------------------------------
# S3
# ---------------------------------------------------------------------------------------
variable "force_destroy_buckets" {
  description = "Let `terraform destroy` delete non-empty buckets (local and dev only)."
  type        = bool
  default     = false
}

variable "noncurrent_version_expiration_days" {
  description = "Days after which non-current object versions expire."
  type        = number
  default     = 90

  validation {
    condition     = var.noncurrent_version_expiration_days >= 1
    error_message = "noncurrent_version_expiration_days must be at least 1."
  }
}

variable "quarantine_expiration_days" {
  description = "Days after which uploads the pipeline failed on (tagged pqfile-status=failed) expire."
  type        = number
  default     = 30

  validation {
    condition     = var.quarantine_expiration_days >= 1
    error_message = "quarantine_expiration_days must be at least 1."
  }
}

variable "retrieval_expiration_days" {
  description = "Days after which retrieval copies (under retrievals/) expire."
  type        = number
  default     = 1

  validation {
    condition     = var.retrieval_expiration_days >= 1
    error_message = "retrieval_expiration_days must be at least 1."
  }
}

variable "package_deleter_role_arn" {
  description = "The one IAM role the encrypted bucket lets delete packages under encrypted/ (every other principal is denied): the role that completes an operator's shred or compromise request. Empty: the execution role of the `shred` function (issue 12), <name_prefix>-<environment>-shred-<region>."
  type        = string
  default     = ""

  validation {
    condition     = var.package_deleter_role_arn == "" || can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:role/", var.package_deleter_role_arn))
    error_message = "package_deleter_role_arn must be empty or an IAM role ARN."
  }
}

variable "enable_access_logging" {
  description = "Create an access-log bucket and turn on S3 server access logging for both buckets."
  type        = bool
  default     = true
}

variable "create_cloudtrail" {
  description = "Create a multi-region CloudTrail trail with data events for both buckets and the retrieve function (who read, wrote, decrypted what)."
  type        = bool
  default     = true
}

# ---------------------------------------------------------------------------------------
# KMS
# ---------------------------------------------------------------------------------------
variable "kms_admin_role_arns" {
  description = "IAM principals allowed to administer (never use) the KMS keys; empty means the account root."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for a in var.kms_admin_role_arns : can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:", a))])
    error_message = "kms_admin_role_arns must hold IAM ARNs."
  }
}

variable "kms_break_glass_role_arns" {
  description = "IAM roles that alone may kms:PutKeyPolicy and kms:CreateGrant on the keys (administrators may not: either would let them grant themselves use). Empty by default: add the break-glass role only for a change of key policy (docs/OPERATIONS.md, \"Break glass: key policies\"), then remove it."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for a in var.kms_break_glass_role_arns : can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:role/", a))])
    error_message = "kms_break_glass_role_arns must hold IAM role ARNs."
  }
}

variable "kms_deletion_window_days" {
  description = "Waiting period before a scheduled KMS key deletion, days."
  type        = number
  default     = 30

  validation {
    condition     = var.kms_deletion_window_days >= 7 && var.kms_deletion_window_days <= 30
    error_message = "kms_deletion_window_days must be between 7 and 30."
  }
}

# ---------------------------------------------------------------------------------------
# Network
# ---------------------------------------------------------------------------------------
variable "create_vpc" {
  description = "Create a VPC with private subnets only (no internet gateway, no NAT)."
  type        = bool
  default     = true
}

variable "vpc_id" {
  description = "Existing VPC to use when create_vpc is false; empty (with create_vpc false) runs the functions outside a VPC (local stack only)."
  type        = string
  default     = ""

  validation {
    condition     = var.vpc_id == "" || can(regex("^vpc-[0-9a-f]+$", var.vpc_id))
    error_message = "vpc_id must be empty or a VPC id (vpc-...)."
  }
}

variable "private_subnet_ids" {
  description = "Private subnets of the existing VPC (at least two, in different AZs) when create_vpc is false."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for s in var.private_subnet_ids : can(regex("^subnet-[0-9a-f]+$", s))])
    error_message = "private_subnet_ids must hold subnet ids (subnet-...)."
  }
}

variable "private_route_table_ids" {
  description = "Route tables of the existing private subnets (for the S3 gateway endpoint) when create_vpc is false."
  type        = list(string)
  default     = []
}

variable "vpc_cidr" {
  description = "CIDR block of the VPC created when create_vpc is true."
  type        = string
  default     = "10.40.0.0/16"

  validation {
    condition     = can(cidrnetmask(var.vpc_cidr))
    error_message = "vpc_cidr must be an IPv4 CIDR block."
  }
}

variable "availability_zones" {
  description = "Availability zones of the created private subnets (two or more)."
  type        = list(string)
  default     = ["us-east-1a", "us-east-1b"]

  validation {
    condition     = length(var.availability_zones) >= 2
    error_message = "Give at least two availability zones."
  }
}

variable "create_vpc_endpoints" {
  description = "Create VPC endpoints for S3, KMS, Step Functions, Secrets Manager, Logs, X-Ray and STS so no NAT is needed."
  type        = bool
  default     = true
}

# ---------------------------------------------------------------------------------------
# Database
# ---------------------------------------------------------------------------------------
variable "create_database" {
  description = "Create an RDS PostgreSQL instance; false uses database_url (local stack) or an existing database."
  type        = bool
  default     = true
}

variable "database_url" {
  description = "PostgreSQL URL given to the functions when create_database is false (the local stack's throwaway server)."
  type        = string
  default     = ""
  sensitive   = true

  validation {
    condition     = var.database_url == "" || can(regex("^postgres(ql)?://", var.database_url))
    error_message = "database_url must be empty or a postgresql:// URL."
  }
}

variable "database_url_per_role" {
  description = "With database_url: each function connects as its own database role (database_users) by putting that role in the URL's user part (any user and password in database_url are dropped). Without database_role_passwords, for servers that trust local connections, as the local stack's throwaway cluster does (the roles of sql/migrations/0001_roles.sql can log in)."
  type        = bool
  default     = false
}

variable "database_role_passwords" {
  description = "With database_url_per_role: each database role gets a generated password in its own Secrets Manager secret (proxy.tf), set by the migrate function as a SCRAM verifier; each function reads its own role's secret at connect time. For servers that require passwords on network connections, as the postgres image of docker-compose.yml does (LocalStack in Docker; docs/OPERATIONS.md \"Database logins\")."
  type        = bool
  default     = false

  validation {
    condition     = !var.database_role_passwords || var.database_url_per_role
    error_message = "database_role_passwords needs database_url_per_role = true (the passwords are those of the functions' own roles)."
  }
}

variable "database_secret_arn" {
  description = "Secrets Manager secret with the credentials of an existing database (create_database false)."
  type        = string
  default     = ""

  validation {
    condition     = var.database_secret_arn == "" || can(regex("^arn:aws[a-z-]*:secretsmanager:", var.database_secret_arn))
    error_message = "database_secret_arn must be empty or a Secrets Manager ARN."
  }
}

variable "database_host" {
  description = "Host of an existing database (create_database false, database_secret_arn set) when its secret does not name one."
  type        = string
  default     = ""
}

variable "database_port" {
  description = "Port of an existing database."
  type        = number
  default     = 5432
}

variable "database_name" {
  description = "Database name of an existing database."
  type        = string
  default     = "pqfile"
}

variable "database_ssl_root_cert" {
  description = "Path, on the function's file system, of the CA bundle that verifies the database's TLS certificate (sslmode=verify-full). The default is where scripts/build_lambda --rds-ca-bundle puts the RDS global bundle in the function zip; required outside the local stack, empty only there (the system trust store)."
  type        = string
  default     = "/var/task/certs/rds-global-bundle.pem"

  validation {
    condition     = var.database_ssl_root_cert == "" || can(regex("^/", var.database_ssl_root_cert))
    error_message = "database_ssl_root_cert must be empty or an absolute path (for example /var/task/certs/rds-global-bundle.pem)."
  }
}

variable "database_iam_auth" {
  description = "Functions connect to the RDS instance with IAM tokens as their own database role (database_users); only the migrate function reads the master user's secret. Required (true) on every RDS stack; false only on the local stack. The migrations grant rds_iam to every role (docs/OPERATIONS.md)."
  type        = bool
  default     = true
}

variable "database_users" {
  description = "Database role each function connects as (sql/migrations/0010_least_privilege.sql: one role per function, each allowed only its own step's SECURITY DEFINER functions; docs/KEYS.md, \"Roles and grants\"). The four rewrap-workflow steps share pqfile_rewrap. The shared roles of 0001 (pqfile_ingest, pqfile_rotate) keep no rights."
  type        = map(string)
  default = {
    fetch           = "pqfile_fetch"
    select_key      = "pqfile_select_key" # selects keys and counts their use; never creates keys
    encrypt         = "pqfile_encrypt"
    store           = "pqfile_store"
    audit           = "pqfile_audit_writer"
    record_failure  = "pqfile_record_failure"
    retrieve        = "pqfile_retrieve"
    rotate_maintain = "pqfile_maintain" # the only role that creates keys
    rotate_plan     = "pqfile_rewrap"
    rotate_rewrap   = "pqfile_rewrap"
    rotate_finish   = "pqfile_rewrap"
    rotate_failure  = "pqfile_rewrap"
    shred           = "pqfile_shred"          # key_shred only (sql/migrations/0013)
    audit_verify    = "pqfile_auditor"        # read-only
    audit_digest    = "pqfile_auditor"        # read-only (signs with KMS, writes the digest bucket)
    documents       = "pqfile_documents"      # status and list through 0017's functions only
    admin           = "pqfile_admin_function" # changes and its audit rows (0018); reads as admin_auditor_database_user
  }

  validation {
    condition     = alltrue([for u in values(var.database_users) : can(regex("^[a-z_][a-z0-9_]{0,62}$", u))])
    error_message = "database_users must map to PostgreSQL role names."
  }
}

variable "db_engine_version" {
  description = "PostgreSQL major (or major.minor) version of the RDS instance."
  type        = string
  default     = "16"

  validation {
    condition     = can(regex("^1[5-9](\\.[0-9]+)?$", var.db_engine_version))
    error_message = "db_engine_version must be PostgreSQL 15 or later."
  }
}

variable "db_instance_class" {
  description = "RDS instance class (Graviton classes match the arm64 functions)."
  type        = string
  default     = "db.t4g.medium"

  validation {
    condition     = can(regex("^db\\.", var.db_instance_class))
    error_message = "db_instance_class must start with db."
  }
}

variable "db_allocated_storage_gb" {
  description = "Allocated storage of the RDS instance, GiB."
  type        = number
  default     = 50

  validation {
    condition     = var.db_allocated_storage_gb >= 20 && var.db_allocated_storage_gb <= 65536
    error_message = "db_allocated_storage_gb must be between 20 and 65536."
  }
}

variable "db_max_allocated_storage_gb" {
  description = "Storage autoscaling ceiling, GiB (0 disables autoscaling)."
  type        = number
  default     = 200
}

variable "db_backup_retention_days" {
  description = "Automated backup retention (RDS backup_retention_period and point-in-time recovery), days. A shredded key's wrapped seed survives in backups this long: the shred function reports shredding complete this many days after the shred (PQFILE_BACKUP_RETENTION_DAYS; docs/KEYS.md, \"Shredding\")."
  type        = number
  default     = 14

  validation {
    condition     = var.db_backup_retention_days >= 1 && var.db_backup_retention_days <= 35
    error_message = "db_backup_retention_days must be between 1 and 35."
  }
}

variable "db_multi_az" {
  description = "Run the RDS instance Multi-AZ."
  type        = bool
  default     = true
}

variable "db_deletion_protection" {
  description = "Deletion protection on the RDS instance (always on in prod)."
  type        = bool
  default     = true
}

variable "db_skip_final_snapshot" {
  description = "Skip the final snapshot when the instance is destroyed (dev only)."
  type        = bool
  default     = false
}

variable "db_monitoring_interval" {
  description = "Enhanced Monitoring interval, seconds (0 disables it)."
  type        = number
  default     = 60

  validation {
    condition     = contains([0, 1, 5, 10, 15, 30, 60], var.db_monitoring_interval)
    error_message = "db_monitoring_interval must be one of 0, 1, 5, 10, 15, 30, 60."
  }
}

# ---------------------------------------------------------------------------------------
# Alarms
# ---------------------------------------------------------------------------------------
variable "create_alarms" {
  description = "Create the CloudWatch alarms and their SNS topic."
  type        = bool
  default     = true
}

variable "alarm_email_addresses" {
  description = "E-mail addresses subscribed to the alarm topic (each must confirm)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for e in var.alarm_email_addresses : can(regex("^[^@ ]+@[^@ ]+$", e))])
    error_message = "alarm_email_addresses must hold e-mail addresses."
  }
}
