# A list of IAM policy statements, given as data, rendered as a policy document: for the
# policies whose statements are a table (the key policies' uses, the seeds statement of a
# function's role, the buckets' denials). The caller merges `json` into the resource's own
# document with source_policy_documents (first) or override_policy_documents (last).

variable "statements" {
  description = "The statements, in order. Principals and conditions are optional; effect defaults to Allow."
  type = list(object({
    sid        = string
    effect     = optional(string, "Allow")
    actions    = list(string)
    resources  = list(string)
    principals = optional(list(object({ type = string, identifiers = list(string) })), [])
    conditions = optional(list(object({ test = string, variable = string, values = list(string) })), [])
  }))

  validation {
    condition     = alltrue([for s in var.statements : contains(["Allow", "Deny"], s.effect)])
    error_message = "A statement's effect is Allow or Deny."
  }
}

data "aws_iam_policy_document" "this" {
  dynamic "statement" {
    for_each = var.statements

    content {
      sid       = statement.value.sid
      effect    = statement.value.effect
      actions   = statement.value.actions
      resources = statement.value.resources

      dynamic "principals" {
        for_each = statement.value.principals

        content {
          type        = principals.value.type
          identifiers = principals.value.identifiers
        }
      }

      dynamic "condition" {
        for_each = statement.value.conditions

        content {
          test     = condition.value.test
          variable = condition.value.variable
          values   = condition.value.values
        }
      }
    }
  }
}

output "json" {
  description = "The policy document (JSON) holding the statements."
  value       = data.aws_iam_policy_document.this.json
}
