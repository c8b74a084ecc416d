output "uploads_bucket_name" {
  description = "Bucket that receives documents under uploads/."
  value       = aws_s3_bucket.this["uploads"].id
}

output "encrypted_bucket_name" {
  description = "Bucket that holds the encrypted packages under encrypted/."
  value       = aws_s3_bucket.this["encrypted"].id
}

output "retrieve_function_name" {
  description = "Function to invoke with {\"document_id\": ...} to decrypt a document."
  value       = aws_lambda_function.this["retrieve"].function_name
}

output "documents_function_name" {
  description = "The documents query function (`pqfile documents status`): invoked with an identity proof, answers what the caller's access rules allow."
  value       = aws_lambda_function.this["documents"].function_name
}

output "ingest_state_machine_arn" {
  description = "The ingest workflow (Standard)."
  value       = aws_sfn_state_machine.workflow["ingest"].arn
}

output "rotation_state_machine_arn" {
  description = "The rotate-keys workflow."
  value       = aws_sfn_state_machine.workflow["rotate-keys"].arn
}

output "function_names" {
  description = "Function name per Terraform key (docs/CONTRACTS.md)."
  value       = { for k, f in aws_lambda_function.this : k => f.function_name }
}

output "seeds_kms_key_arn" {
  description = "KMS key that wraps the private-key seeds (PQFILE_KMS_KEY_ID)."
  value       = aws_kms_key.this["seeds"].arn
}

output "attestation_kms_key_arn" {
  description = "KMS HMAC key that attests pool keys (PQFILE_ATTESTATION_KEY_ID)."
  value       = aws_kms_key.attestation.arn
}

output "data_kms_key_arn" {
  description = "KMS key of S3, logs, queues, the topic and the database."
  value       = aws_kms_key.this["data"].arn
}

output "alarm_topic_arn" {
  description = "SNS topic the alarms publish to (null when create_alarms is false)."
  value       = var.create_alarms ? aws_sns_topic.alarms[0].arn : null
}

output "database_endpoint" {
  description = "RDS endpoint (host:port), null when create_database is false."
  value       = var.create_database ? aws_db_instance.this[0].endpoint : null
}

output "database_secret_arn" {
  description = "Secrets Manager secret with the database master credentials (RDS managed): migrations, break-glass."
  value       = var.create_database || var.database_secret_arn != "" ? local.database_secret_arn : null
}

output "failure_queue_urls" {
  description = "Dead-letter queues: undelivered events and failed asynchronous invocations."
  value       = { for k, q in aws_sqs_queue.failures : k => q.id }
}

output "admin_function_name" {
  description = "The admin function `pqfile keys|access|audit --stack DIR` invoke (PQFILE_ADMIN_FUNCTION)."
  value       = aws_lambda_function.this[local.admin_function].function_name
}

output "operator_policy_arn" {
  description = "The IAM policy that lets a principal invoke the admin function (it also needs an operate access rule)."
  value       = aws_iam_policy.operator.arn
}

output "audit_digest_bucket_name" {
  description = "The S3 Object Lock bucket of the signed audit digests (digests/<tree size>.json; docs/OPERATIONS.md, \"Audit digests\")."
  value       = aws_s3_bucket.audit_digests.id
}

output "audit_digest_key_arn" {
  description = "The KMS asymmetric key that signs the audit digests (its public key: aws kms get-public-key)."
  value       = aws_kms_key.audit_digests.arn
}

output "audit_digest_function_name" {
  description = "The scheduled digest-signing function."
  value       = aws_lambda_function.this["audit_digest"].function_name
}

output "key_pool_policy" {
  description = "The key pool policy the functions run with (PQFILE_POOL_TARGET, PQFILE_POOL_FLOOR, PQFILE_KEY_MAX_AGE_DAYS): `pqfile keys status` judges \"below floor\" by it."
  value = {
    target       = var.key_pool_target
    floor        = var.key_pool_floor
    max_age_days = var.key_max_age_days
    suites       = local.pool_suites
  }
}
