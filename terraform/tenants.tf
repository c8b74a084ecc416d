# Tenants and who may read what (docs/OPERATIONS.md, "Tenants and access").
#
# A tenant is the first folder under uploads/ (uploads/<tenant>/...). Reading is decided by
# the access rules in PostgreSQL (`pqfile access grant`), not by IAM; IAM only decides who
# may upload into a tenant's folder and who may invoke the retrieve function at all. The
# example policies below are attached by you to the uploaders' and readers' roles or users.

variable "audience" {
  description = "The name of this deployment that identity proofs must carry (PQFILE_AUDIENCE of the retrieve function); empty for \"<name_prefix>-<environment>\"."
  type        = string
  default     = ""

  validation {
    condition     = var.audience == "" || can(regex("^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$", var.audience))
    error_message = "audience must be 1-128 characters of letters, digits and . _ : / -."
  }
}

variable "sts_endpoint_url" {
  description = "The STS endpoint the retrieve function sends identity proofs to (PQFILE_STS_ENDPOINT_URL); empty for the regional https://sts.<region>.amazonaws.com (through the VPC's sts endpoint)."
  type        = string
  default     = ""

  validation {
    condition     = var.sts_endpoint_url == "" || can(regex("^https?://[^/?#@]+/?$", var.sts_endpoint_url))
    error_message = "sts_endpoint_url must be empty or scheme://host[:port]/ (http only for a loopback host)."
  }
}

variable "sts_plain_http_host" {
  description = "One host name besides loopback that sts_endpoint_url may reach over plain http (PQFILE_STS_PLAIN_HTTP_HOST): an emulator on a private network, `localstack` on the Docker path (envs/docker.tfvars). Empty everywhere else; refused outside the local environments."
  type        = string
  default     = ""

  validation {
    condition     = var.sts_plain_http_host == "" || (can(regex("^[a-z0-9-]{1,63}$", var.sts_plain_http_host)) && contains(["local", "localstack", "docker"], var.environment))
    error_message = "sts_plain_http_host must be empty, or one lower-case host name label in the local, localstack or docker environment."
  }
}

variable "tenants" {
  description = "Tenants to make example IAM policies for: uploaders (s3:PutObject on uploads/<tenant>/*) and readers (lambda:InvokeFunction on retrieve)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for t in var.tenants : can(regex("^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$", t))])
    error_message = "each tenant is 1-63 characters of letters, digits and . _ - (not starting with . _ -)."
  }
}

locals {
  audience = var.audience != "" ? var.audience : local.name
}

data "aws_iam_policy_document" "tenant_uploader" {
  for_each = toset(var.tenants)

  statement {
    sid       = "PutIntoTheTenantFolder"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.this["uploads"].arn}/uploads/${each.key}/*"]
  }

  # The uploads bucket encrypts with the data key (SSE-KMS): a PutObject needs a data key.
  statement {
    sid       = "EncryptTheUpload"
    actions   = ["kms:GenerateDataKey"]
    resources = [aws_kms_key.this["data"].arn]

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["s3.${var.region}.amazonaws.com"]
    }
  }
}

resource "aws_iam_policy" "tenant_uploader" {
  for_each = toset(var.tenants)

  name        = "${local.name}-upload-${each.key}"
  description = "Upload documents for tenant ${each.key} (uploads/${each.key}/ only)"
  policy      = data.aws_iam_policy_document.tenant_uploader[each.key].json
}

# Invoking is not reading: the function reads only what an access rule allows the
# verified caller. One policy serves every tenant's readers.
data "aws_iam_policy_document" "retriever" {
  statement {
    sid       = "InvokeRetrieve"
    actions   = ["lambda:InvokeFunction"]
    resources = [aws_lambda_function.this["retrieve"].arn, aws_lambda_function.this["documents"].arn]
  }
}

resource "aws_iam_policy" "retriever" {
  count = length(var.tenants) > 0 ? 1 : 0

  name        = "${local.name}-retrieve"
  description = "Invoke the retrieve and documents functions (what is read is decided by pqfile access rules)"
  policy      = data.aws_iam_policy_document.retriever.json
}

output "audience" {
  description = "PQFILE_AUDIENCE of the retrieve function: what `pqfile auth proof` / `pqfile retrieve` sign for."
  value       = local.audience
}

output "tenant_uploader_policy_arns" {
  description = "Per tenant: the IAM policy that lets a principal upload into uploads/<tenant>/."
  value       = { for t, p in aws_iam_policy.tenant_uploader : t => p.arn }
}

output "retriever_policy_arn" {
  description = "The IAM policy that lets a principal invoke the retrieve function (null without tenants)."
  value       = length(aws_iam_policy.retriever) > 0 ? aws_iam_policy.retriever[0].arn : null
}
