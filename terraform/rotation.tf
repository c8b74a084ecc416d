# The rotate-keys workflow (statemachines/rotate-keys.asl.json): keeps the key pool at its
# target, queues old or heavily used keys, rewraps their documents onto new keys (the data
# key is re-wrapped, the body is not re-encrypted) and expires them. Runs on a schedule
# (enable_rotation_schedule, eventbridge.tf) or by hand; the workflow itself is in stepfunctions.tf.

locals {
  rotation_functions = {
    rotate_maintain = {
      handler     = "pqfile.handlers.rotate.maintain_handler"
      description = "Rotation step MaintainPool: refills the pool, queues keys due for rotation"
      seed_access = "encrypt"
      attestation = "generate"
    }
    rotate_plan = {
      handler     = "pqfile.handlers.rotate.plan_handler"
      description = "Rotation step PlanRewrap: lists the documents of a rotated key"
      seed_access = "none"
      attestation = "verify"
    }
    rotate_rewrap = {
      handler     = "pqfile.handlers.rotate.rewrap_handler"
      description = "Rotation step RewrapDocument: moves one document to a new key"
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
