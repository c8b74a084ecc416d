# A group of single-metric CloudWatch alarms that share their actions: every alarm pages on
# ALARM and on OK. Missing data does not page by default (an idle function, an unused suite,
# a queue nobody wrote to publish nothing); an alarm whose metric must always arrive (the
# audit verification) treats missing data as breaching. Each alarm's description links to
# its runbook.

variable "alarms" {
  description = "Alarm key => the alarm: its name, description, metric, and the threshold it pages at (by default: a Sum over 5 minutes reaching 1)."
  type = map(object({
    name                = string
    description         = string
    namespace           = string
    metric_name         = string
    dimensions          = map(string)
    statistic           = optional(string, "Sum")
    period              = optional(number, 300)
    evaluation_periods  = optional(number, 1)
    threshold           = optional(number, 1)
    comparison_operator = optional(string, "GreaterThanOrEqualToThreshold")
    treat_missing_data  = optional(string, "notBreaching")
  }))

  validation {
    condition     = alltrue([for a in values(var.alarms) : can(regex("runbook: docs/OPERATIONS.md#", a.description))])
    error_message = "Every alarm description links to its runbook (docs/OPERATIONS.md#...)."
  }

  validation {
    condition     = alltrue([for a in values(var.alarms) : contains(["breaching", "notBreaching", "ignore", "missing"], a.treat_missing_data)])
    error_message = "treat_missing_data is breaching, notBreaching, ignore or missing."
  }
}

variable "actions" {
  description = "ARNs notified when an alarm fires and when it clears (the alarm topic)."
  type        = list(string)

  validation {
    condition     = alltrue([for arn in var.actions : can(regex("^arn:", arn))])
    error_message = "Alarm actions are ARNs."
  }
}

resource "aws_cloudwatch_metric_alarm" "this" {
  for_each = var.alarms

  alarm_name          = each.value.name
  alarm_description   = each.value.description
  namespace           = each.value.namespace
  metric_name         = each.value.metric_name
  dimensions          = each.value.dimensions
  statistic           = each.value.statistic
  period              = each.value.period
  evaluation_periods  = each.value.evaluation_periods
  threshold           = each.value.threshold
  comparison_operator = each.value.comparison_operator
  treat_missing_data  = each.value.treat_missing_data
  alarm_actions       = var.actions
  ok_actions          = var.actions
}
