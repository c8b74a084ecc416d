# Log groups with one retention and one KMS key: the stack creates its log groups itself
# (AWS services would create them on first write with no retention and no key).

variable "names" {
  description = "Key => log group name."
  type        = map(string)

  validation {
    condition     = alltrue([for name in values(var.names) : startswith(name, "/aws/")])
    error_message = "Log group names start with /aws/ (the prefix each AWS service writes under)."
  }
}

variable "retention_days" {
  description = "How long the groups keep events."
  type        = number

  validation {
    condition     = var.retention_days > 0
    error_message = "Log groups keep events for a limited time (never \"forever\", 0)."
  }
}

variable "kms_key_arn" {
  description = "The KMS key the groups encrypt with."
  type        = string

  validation {
    condition     = can(regex("^arn:", var.kms_key_arn))
    error_message = "The KMS key is given by its ARN."
  }
}

resource "aws_cloudwatch_log_group" "this" {
  for_each = var.names

  name              = each.value
  retention_in_days = var.retention_days
  kms_key_id        = var.kms_key_arn
}

output "arns" {
  description = "Key => log group ARN."
  value       = { for k, group in aws_cloudwatch_log_group.this : k => group.arn }
}

output "names" {
  description = "Key => log group name."
  value       = { for k, group in aws_cloudwatch_log_group.this : k => group.name }
}
