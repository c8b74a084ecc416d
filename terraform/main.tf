data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
data "aws_region" "current" {}

locals {
  is_local = var.local_endpoint != ""
  endpoint = local.is_local ? var.local_endpoint : null

  name       = "${var.name_prefix}-${var.environment}"
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  region     = data.aws_region.current.name

  # Object prefixes the pipeline owns (functions/pqfile/config/).
  uploads_prefix   = "uploads/"
  encrypted_prefix = "encrypted/"
  # record_failure tags the upload it failed on (functions/pqfile/usecases/ingest.py).
  failed_tag        = "pqfile-status"
  retrievals_prefix = "retrievals/"

  # The network the functions run in: a created VPC, an existing one, or none (local).
  use_vpc            = var.create_vpc || var.vpc_id != ""
  vpc_id             = var.create_vpc ? aws_vpc.this[0].id : var.vpc_id
  private_subnet_ids = var.create_vpc ? aws_subnet.private[*].id : var.private_subnet_ids

  kms_admin_arns = length(var.kms_admin_role_arns) > 0 ? var.kms_admin_role_arns : ["arn:${local.partition}:iam::${local.account_id}:root"]
}
