# One provider configuration for AWS and for the local emulator (tflocal-style): when
# `local_endpoint` is set every service this root uses points at it. Credentials always come
# from the environment (the local deploy exports the emulator's dummy keys), never from here.
provider "aws" {
  region = var.region

  skip_credentials_validation = local.is_local
  skip_requesting_account_id  = local.is_local
  skip_metadata_api_check     = local.is_local
  skip_region_validation      = local.is_local
  s3_use_path_style           = local.is_local

  endpoints {
    cloudwatch     = local.endpoint
    cloudwatchlogs = local.endpoint
    ec2            = local.endpoint
    events         = local.endpoint
    iam            = local.endpoint
    kms            = local.endpoint
    lambda         = local.endpoint
    rds            = local.endpoint
    s3             = local.endpoint
    secretsmanager = local.endpoint
    sfn            = local.endpoint
    sns            = local.endpoint
    sqs            = local.endpoint
    sts            = local.endpoint
  }

  default_tags {
    tags = merge(var.tags, {
      Project     = "pqfile"
      Environment = var.environment
      ManagedBy   = "terraform"
    })
  }
}
