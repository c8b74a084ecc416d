# The rotate-keys workflow (statemachines/rotate-keys.asl.json): keeps the key pool at its
# target, queues old or heavily used keys, rewraps their documents onto new keys (the data
# key is re-wrapped, the body is not re-encrypted) and expires them. Runs on a schedule
# (enable_rotation_schedule, eventbridge.tf) or by hand; the workflow itself is in stepfunctions.tf.

locals {
  # PlanRewrap writes one JSON manifest per batch here, in the encrypted bucket; the
  # workflow's distributed Map reads it (pqfile.config ROTATION_MANIFESTS_PREFIX).
  rotation_manifests_prefix = "rotation-manifests/"

  rotation_functions = {
    rotate_maintain = {
      handler     = "pqfile.handlers.rotate.maintain_handler"
      description = "Rotation step MaintainPool: refills the pool, queues keys due for rotation"
      seed_access = "encrypt"
      attestation = "generate"
    }
    rotate_plan = {
      handler     = "pqfile.handlers.rotate.plan_handler"
      description = "Rotation step PlanRewrap: writes a batch manifest of a rotated key's documents"
      seed_access = "none"
      attestation = "verify"
    }
    rotate_rewrap = {
      handler     = "pqfile.handlers.rotate.rewrap_handler"
      description = "Rotation step RewrapDocument: moves one document to its target key"
      seed_access = "decrypt"
      attestation = "verify"
    }
    rotate_finish = {
      handler     = "pqfile.handlers.rotate.finish_handler"
      description = "Rotation step FinishRotation: expires the rotated key"
      seed_access = "none"
      attestation = "verify"
    }
    rotate_failure = {
      handler     = "pqfile.handlers.rotate.failure_handler"
      description = "Rotation step RecordFailure: audits a failed rotation"
      seed_access = "none"
      attestation = "none"
    }
    # Its role, <name>-shred-<region>, is the one principal the encrypted bucket lets delete
    # under encrypted/ (s3.tf, DenyPackageDeletionButShred); it never touches a seed.
    shred = {
      handler     = "pqfile.handlers.shred.handler"
      description = "Rotation step ShredKeys: deletes every package version of a shredded key, destroys its seed"
      seed_access = "none"
      attestation = "none"
    }
  }
}

# The rotate-keys state machine's own rights beyond invoking its steps (stepfunctions.tf):
# its distributed Map (RewrapDocuments) starts one STANDARD child execution of this same
# state machine per manifest item and tracks and stops them, and its S3 ItemReader reads
# the manifests PlanRewrap wrote (SSE-KMS: the data key, through S3 only). The ARNs are
# built from the name: the state machine's ARN would be a cycle (machine -> role policy).
locals {
  rotate_keys_name = "${local.name}-rotate-keys"
  rotate_keys_arn  = "arn:${local.partition}:states:${local.region}:${local.account_id}:stateMachine:${local.rotate_keys_name}"

  rotation_workflow_statements = [
    {
      sid       = "StartRewrapChildren"
      actions   = ["states:StartExecution"]
      resources = [local.rotate_keys_arn]
      condition = null
    },
    {
      # Child executions of a map run are named <state machine>/<map run label>:<id>.
      sid       = "TrackRewrapChildren"
      actions   = ["states:DescribeExecution", "states:StopExecution"]
      resources = ["arn:${local.partition}:states:${local.region}:${local.account_id}:execution:${local.rotate_keys_name}/*"]
      condition = null
    },
    {
      sid       = "ReadRewrapManifests"
      actions   = ["s3:GetObject"]
      resources = ["${aws_s3_bucket.this["encrypted"].arn}/${local.rotation_manifests_prefix}*"]
      condition = null
    },
    {
      sid       = "DecryptManifestsThroughS3"
      actions   = ["kms:Decrypt"]
      resources = [aws_kms_key.this["data"].arn]
      condition = { test = "StringEquals", variable = "kms:ViaService", values = ["s3.${local.region}.amazonaws.com"] }
    },
  ]
}
