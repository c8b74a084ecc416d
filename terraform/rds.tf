# RDS PostgreSQL (create_database = true): private subnets only, encrypted storage, TLS
# forced, the master password generated and rotated by RDS in Secrets Manager.

locals {
  db_family = "postgres${split(".", var.db_engine_version)[0]}"
}

resource "aws_db_subnet_group" "this" {
  count = var.create_database ? 1 : 0

  name        = local.name
  description = "PQFile database: private subnets"
  subnet_ids  = local.private_subnet_ids

  lifecycle {
    precondition {
      condition     = local.use_vpc
      error_message = "create_database needs a VPC: set create_vpc = true or give vpc_id and private_subnet_ids."
    }
  }
}

resource "aws_security_group" "database" {
  count = var.create_database ? 1 : 0

  name        = "${local.name}-database"
  description = "PQFile database: PostgreSQL from the functions only"
  vpc_id      = local.vpc_id
}

resource "aws_db_parameter_group" "this" {
  count = var.create_database ? 1 : 0

  name        = "${local.name}-${local.db_family}"
  family      = local.db_family
  description = "PQFile: TLS only, connection and DDL logging"

  parameter {
    name  = "rds.force_ssl"
    value = "1"
  }

  parameter {
    name  = "ssl_min_protocol_version"
    value = "TLSv1.2"
  }

  parameter {
    name  = "log_connections"
    value = "1"
  }

  parameter {
    name  = "log_disconnections"
    value = "1"
  }

  parameter {
    name  = "log_statement"
    value = "ddl"
  }

  parameter {
    name  = "log_min_duration_statement"
    value = "1000"
  }

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_iam_role" "rds_monitoring" {
  count = var.create_database && var.db_monitoring_interval > 0 ? 1 : 0

  name               = "${local.name}-rds-monitoring-${local.region}"
  assume_role_policy = data.aws_iam_policy_document.assume_role["rds_monitoring"].json
}

resource "aws_iam_role_policy_attachment" "rds_monitoring" {
  count = var.create_database && var.db_monitoring_interval > 0 ? 1 : 0

  role       = aws_iam_role.rds_monitoring[0].name
  policy_arn = "arn:${local.partition}:iam::aws:policy/service-role/AmazonRDSEnhancedMonitoringRole"
}

resource "aws_db_instance" "this" {
  count = var.create_database ? 1 : 0

  identifier     = local.name
  engine         = "postgres"
  engine_version = var.db_engine_version
  instance_class = var.db_instance_class
  db_name        = "pqfile"
  username       = "pqfile_admin"
  port           = 5432

  manage_master_user_password         = true
  master_user_secret_kms_key_id       = aws_kms_key.this["data"].arn
  iam_database_authentication_enabled = true

  allocated_storage     = var.db_allocated_storage_gb
  max_allocated_storage = var.db_max_allocated_storage_gb
  storage_type          = "gp3"
  storage_encrypted     = true
  kms_key_id            = aws_kms_key.this["data"].arn

  db_subnet_group_name   = aws_db_subnet_group.this[0].name
  vpc_security_group_ids = [aws_security_group.database[0].id]
  publicly_accessible    = false
  multi_az               = var.db_multi_az
  parameter_group_name   = aws_db_parameter_group.this[0].name

  backup_retention_period   = var.db_backup_retention_days
  backup_window             = "03:00-04:00"
  maintenance_window        = "sun:04:30-sun:05:30"
  copy_tags_to_snapshot     = true
  deletion_protection       = var.db_deletion_protection
  skip_final_snapshot       = var.db_skip_final_snapshot
  final_snapshot_identifier = "${local.name}-final"
  delete_automated_backups  = false

  auto_minor_version_upgrade      = true
  allow_major_version_upgrade     = false
  enabled_cloudwatch_logs_exports = ["postgresql", "upgrade"]

  performance_insights_enabled          = true
  performance_insights_kms_key_id       = aws_kms_key.this["data"].arn
  performance_insights_retention_period = 7

  monitoring_interval = var.db_monitoring_interval
  monitoring_role_arn = var.db_monitoring_interval > 0 ? aws_iam_role.rds_monitoring[0].arn : null

  # Its log groups (logs.tf) exist before RDS would create them without retention or key.
  depends_on = [module.log_groups]
}
