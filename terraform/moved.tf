# Where resources went when their repeated blocks became for_each and modules (issue 8):
# an existing deployment moves its state on the next plan instead of destroying and
# recreating (tests/terraform/test_moved.py plans this tree from a deployment of the one
# before). Keep these until every deployment has applied once; removing one later is a
# breaking change for a deployment that has not.

# The two KMS keys and their aliases (kms.tf).

moved {
  from = aws_kms_key.seeds
  to   = aws_kms_key.this["seeds"]
}

moved {
  from = aws_kms_alias.seeds
  to   = aws_kms_alias.this["seeds"]
}

moved {
  from = aws_kms_key.data
  to   = aws_kms_key.this["data"]
}

moved {
  from = aws_kms_alias.data
  to   = aws_kms_alias.this["data"]
}

# The workflows (stepfunctions.tf): one resource per kind, keyed by workflow.

moved {
  from = aws_cloudwatch_log_group.ingest
  to   = module.log_groups["workflow"].aws_cloudwatch_log_group.this["ingest"]
}

moved {
  from = aws_cloudwatch_log_group.rotation
  to   = module.log_groups["workflow"].aws_cloudwatch_log_group.this["rotate-keys"]
}

moved {
  from = aws_iam_role.ingest
  to   = aws_iam_role.workflow["ingest"]
}

moved {
  from = aws_iam_role.rotation
  to   = aws_iam_role.workflow["rotate-keys"]
}

moved {
  from = aws_iam_role_policy.ingest
  to   = aws_iam_role_policy.workflow["ingest"]
}

moved {
  from = aws_iam_role_policy.rotation
  to   = aws_iam_role_policy.workflow["rotate-keys"]
}

moved {
  from = aws_sfn_state_machine.ingest
  to   = aws_sfn_state_machine.workflow["ingest"]
}

moved {
  from = aws_sfn_state_machine.rotation
  to   = aws_sfn_state_machine.workflow["rotate-keys"]
}

moved {
  from = aws_cloudwatch_metric_alarm.ingest_failed[0]
  to   = aws_cloudwatch_metric_alarm.executions_failed["ingest"]
}

moved {
  from = aws_cloudwatch_metric_alarm.rotation_failed[0]
  to   = aws_cloudwatch_metric_alarm.executions_failed["rotate-keys"]
}

# The roles AWS services assume (iam.tf, service_roles).

moved {
  from = aws_iam_role.events
  to   = aws_iam_role.service["events"]
}

moved {
  from = aws_iam_role_policy.events
  to   = aws_iam_role_policy.service["events"]
}

moved {
  from = aws_iam_role.rotation_schedule[0]
  to   = aws_iam_role.service["rotation_schedule"]
}

moved {
  from = aws_iam_role_policy.rotation_schedule[0]
  to   = aws_iam_role_policy.service["rotation_schedule"]
}

moved {
  from = aws_iam_role.trail[0]
  to   = aws_iam_role.service["trail"]
}

moved {
  from = aws_iam_role_policy.trail[0]
  to   = aws_iam_role_policy.service["trail"]
}

moved {
  from = aws_iam_role.flow_logs[0]
  to   = aws_iam_role.service["flow_logs"]
}

moved {
  from = aws_iam_role_policy.flow_logs[0]
  to   = aws_iam_role_policy.service["flow_logs"]
}

# The dead-letter queues (queues.tf).

moved {
  from = aws_sqs_queue.event_failures
  to   = aws_sqs_queue.failures["events"]
}

moved {
  from = aws_sqs_queue_policy.event_failures
  to   = aws_sqs_queue_policy.failures["events"]
}

moved {
  from = aws_sqs_queue.function_failures
  to   = aws_sqs_queue.failures["functions"]
}

moved {
  from = aws_sqs_queue_policy.function_failures
  to   = aws_sqs_queue_policy.failures["functions"]
}

# The security group rules (network.tf).

moved {
  from = aws_vpc_security_group_egress_rule.lambda_to_endpoints[0]
  to   = aws_vpc_security_group_egress_rule.lambda["endpoints"]
}

moved {
  from = aws_vpc_security_group_egress_rule.lambda_to_s3[0]
  to   = aws_vpc_security_group_egress_rule.lambda["s3"]
}

moved {
  from = aws_vpc_security_group_egress_rule.lambda_to_database[0]
  to   = aws_vpc_security_group_egress_rule.lambda["database"]
}

moved {
  from = aws_vpc_security_group_ingress_rule.endpoints_from_lambda[0]
  to   = aws_vpc_security_group_ingress_rule.from_lambda["endpoints"]
}

moved {
  from = aws_vpc_security_group_ingress_rule.database_from_lambda[0]
  to   = aws_vpc_security_group_ingress_rule.from_lambda["database"]
}

# The single-metric alarms (monitoring.tf, modules/metric-alarms): whole resources keep their keys.

moved {
  from = aws_cloudwatch_metric_alarm.function_errors
  to   = module.metric_alarms["function_errors"].aws_cloudwatch_metric_alarm.this
}

moved {
  from = aws_cloudwatch_metric_alarm.function_throttles
  to   = module.metric_alarms["function_throttles"].aws_cloudwatch_metric_alarm.this
}

moved {
  from = aws_cloudwatch_metric_alarm.key_pool_low
  to   = module.metric_alarms["key_pool_low"].aws_cloudwatch_metric_alarm.this
}

moved {
  from = aws_cloudwatch_metric_alarm.dead_letters
  to   = module.metric_alarms["dead_letters"].aws_cloudwatch_metric_alarm.this
}

moved {
  from = aws_cloudwatch_metric_alarm.audit_verification_failed[0]
  to   = module.metric_alarms["audit_verification_failed"].aws_cloudwatch_metric_alarm.this["chain"]
}

# The schedules (eventbridge.tf).

moved {
  from = aws_cloudwatch_event_rule.rotation_schedule[0]
  to   = aws_cloudwatch_event_rule.schedule["rotate-keys"]
}

moved {
  from = aws_cloudwatch_event_target.rotation[0]
  to   = aws_cloudwatch_event_target.schedule["rotate-keys"]
}

moved {
  from = aws_cloudwatch_event_rule.audit_verify[0]
  to   = aws_cloudwatch_event_rule.schedule["audit-verify"]
}

moved {
  from = aws_cloudwatch_event_target.audit_verify[0]
  to   = aws_cloudwatch_event_target.schedule["audit-verify"]
}

# The log bucket's public access block, ownership and versioning, with the other buckets' (s3.tf).

moved {
  from = aws_s3_bucket_public_access_block.access_logs[0]
  to   = aws_s3_bucket_public_access_block.this["access_logs"]
}

moved {
  from = aws_s3_bucket_ownership_controls.access_logs[0]
  to   = aws_s3_bucket_ownership_controls.this["access_logs"]
}

moved {
  from = aws_s3_bucket_versioning.access_logs[0]
  to   = aws_s3_bucket_versioning.this["access_logs"]
}

# The log groups (logs.tf, modules/log-groups); the workflows' are above.

moved {
  from = aws_cloudwatch_log_group.function
  to   = module.log_groups["function"].aws_cloudwatch_log_group.this
}

moved {
  from = aws_cloudwatch_log_group.database
  to   = module.log_groups["database"].aws_cloudwatch_log_group.this
}

moved {
  from = aws_cloudwatch_log_group.flow_logs[0]
  to   = module.log_groups["flow_logs"].aws_cloudwatch_log_group.this["flow_logs"]
}
