# One role per function, each scoped to the exact ARNs (and object prefixes) it touches.

locals {
  uploads_arn   = aws_s3_bucket.this["uploads"].arn
  encrypted_arn = aws_s3_bucket.this["encrypted"].arn

  # Object access per function: which bucket prefix, which actions.
  # Object access per function (functions/pqfile/usecases): which prefix, which actions.
  # Version actions are listed with their plain forms: the code addresses object versions.
  s3_access = {
    fetch = [
      { sid = "StatUploads", actions = ["s3:GetObject", "s3:GetObjectVersion"], resources = ["${local.uploads_arn}/${local.uploads_prefix}*"] },
    ]
    select_key = []
    encrypt = [
      { sid = "ReadUploads", actions = ["s3:GetObject", "s3:GetObjectVersion"], resources = ["${local.uploads_arn}/${local.uploads_prefix}*"] },
      { sid = "WritePackages", actions = ["s3:GetObject", "s3:GetObjectVersion", "s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"], resources = ["${local.encrypted_arn}/${local.encrypted_prefix}*"] },
    ]
    store = [
      # Reads the package back; deletes nothing under encrypted/ (the bucket denies it too).
      { sid = "VerifyPackages", actions = ["s3:GetObject", "s3:GetObjectVersion"], resources = ["${local.encrypted_arn}/${local.encrypted_prefix}*"] },
      # Deletes the plaintext version once the package is committed and read back.
      { sid = "DeletePlaintext", actions = ["s3:GetObject", "s3:GetObjectVersion", "s3:DeleteObject", "s3:DeleteObjectVersion"], resources = ["${local.uploads_arn}/${local.uploads_prefix}*"] },
    ]
    audit = []
    record_failure = [
      # Keeps the failed upload, tagged for the quarantine lifecycle rule.
      { sid = "TagFailedUploads", actions = ["s3:PutObjectTagging", "s3:PutObjectVersionTagging", "s3:GetObjectTagging", "s3:GetObjectVersionTagging"], resources = ["${local.uploads_arn}/${local.uploads_prefix}*"] },
    ]
    # PlanRewrap writes each batch's manifest (the distributed Map's items).
    rotate_plan = [
      { sid = "WriteRewrapManifests", actions = ["s3:PutObject"], resources = ["${local.encrypted_arn}/${local.rotation_manifests_prefix}*"] },
    ]
    # Rewrap rewrites a package in place (new header, body copied with UploadPartCopy), or
    # re-encrypts it (the committed version streamed into a multipart upload); never deletes.
    rotate_rewrap = [
      { sid = "RewritePackages", actions = ["s3:GetObject", "s3:GetObjectVersion", "s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"], resources = ["${local.encrypted_arn}/${local.encrypted_prefix}*"] },
    ]
    # Shred deletes every version of a shredded key's packages, and every older version of
    # a compromised key's re-encrypted packages (the bucket policy denies deletion under
    # encrypted/ to every other principal); it reads headers, writes nothing.
    shred = [
      { sid = "DeletePackageVersions", actions = ["s3:GetObject", "s3:GetObjectVersion", "s3:DeleteObject", "s3:DeleteObjectVersion"], resources = ["${local.encrypted_arn}/${local.encrypted_prefix}*"] },
      { sid = "ListPackageVersions", actions = ["s3:ListBucketVersions"], resources = [local.encrypted_arn] },
    ]
    retrieve = [
      { sid = "ReadPackages", actions = ["s3:GetObject", "s3:GetObjectVersion"], resources = ["${local.encrypted_arn}/${local.encrypted_prefix}*"] },
      { sid = "WriteRetrievalCopies", actions = ["s3:GetObject", "s3:GetObjectVersion", "s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"], resources = ["${local.encrypted_arn}/${local.retrievals_prefix}*"] },
    ]
  }
}

resource "aws_iam_role" "function" {
  for_each = local.functions

  name               = "${local.function_names[each.key]}-${local.region}"
  description        = "Execution role of ${local.function_names[each.key]}"
  assume_role_policy = data.aws_iam_policy_document.assume_role["lambda"].json
}

# The seeds key: wrap or unwrap (a function's seed_access), only with a seed's encryption
# context; the last statement of the function's policy.
module "seed_use" {
  source   = "./modules/policy-statements"
  for_each = { for use in local.seed_uses : use.access => use }

  statements = [{
    sid        = each.value.role_sid
    actions    = each.value.role_actions
    resources  = [aws_kms_key.this["seeds"].arn]
    conditions = local.seed_context_conditions
  }]
}

# The attestation key: generate (maintain) or verify MACs (a function's attestation).
module "attestation_use" {
  source   = "./modules/policy-statements"
  for_each = { for use in local.attestation_uses : use.access => use }

  statements = [{
    sid        = each.value.role_sid
    actions    = each.value.actions
    resources  = [aws_kms_key.attestation.arn]
    conditions = [{ test = "StringEquals", variable = "kms:MacAlgorithm", values = ["HMAC_SHA_256"] }]
  }]
}

data "aws_iam_policy_document" "function" {
  for_each = local.functions

  override_policy_documents = concat(
    [for access, use in module.seed_use : use.json if access == each.value.seed_access],
    [for access, use in module.attestation_use : use.json if access == each.value.attestation],
  )

  statement {
    sid       = "WriteOwnLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${module.log_groups["function"].arns[each.key]}:*"]
  }

  statement {
    sid       = "FailureDestination"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.failures["functions"].arn]
  }

  # The data key, only through the services that hold our data (SSE-KMS objects, the
  # encrypted queue, the database secret).
  statement {
    sid       = "DataKeyThroughServices"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [aws_kms_key.this["data"].arn]

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = [for s in ["s3", "sqs", "secretsmanager"] : "${s}.${local.region}.amazonaws.com"]
    }
  }

  dynamic "statement" {
    for_each = contains(local.secret_functions, each.key) ? [local.database_secret_arn] : []

    content {
      sid       = "ReadDatabaseSecret"
      actions   = ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"]
      resources = [statement.value]
    }
  }

  dynamic "statement" {
    for_each = local.database_iam && each.key != local.migrate_function ? [local.function_database_user[each.key]] : []

    content {
      sid       = "ConnectAsOwnDatabaseRole"
      actions   = ["rds-db:connect"]
      resources = ["arn:${local.partition}:rds-db:${local.region}:${local.account_id}:dbuser:${local.database_connect_id}/${statement.value}"]
    }
  }

  # Completion events (eventbridge.tf): PutEvents on the default bus, as source "pqfile"
  # with one of the service's detail types, for the functions that announce them only.
  dynamic "statement" {
    for_each = contains(local.event_functions, each.key) ? [local.event_bus_arn] : []

    content {
      sid       = "PutCompletionEvents"
      actions   = ["events:PutEvents"]
      resources = [statement.value]

      condition {
        test     = "StringEquals"
        variable = "events:source"
        values   = ["pqfile"]
      }

      condition {
        test     = "StringEquals"
        variable = "events:detail-type"
        values   = local.event_types
      }
    }
  }

  dynamic "statement" {
    for_each = lookup(local.s3_access, each.key, [])

    content {
      sid       = statement.value.sid
      actions   = statement.value.actions
      resources = statement.value.resources
    }
  }

  # Without ListBucket, S3 answers 403 instead of 404 for a missing object, and the
  # idempotency checks (does the package exist yet?) could not tell the two apart.
  dynamic "statement" {
    for_each = length(lookup(local.s3_access, each.key, [])) > 0 ? [1] : []

    content {
      sid       = "ListForNotFound"
      actions   = ["s3:ListBucket"]
      resources = distinct([for access in lookup(local.s3_access, each.key, []) : split("/", access.resources[0])[0]])
    }
  }
}

resource "aws_iam_role_policy" "function" {
  for_each = local.functions

  name   = "pqfile-${replace(each.key, "_", "-")}"
  role   = aws_iam_role.function[each.key].id
  policy = data.aws_iam_policy_document.function[each.key].json
}

# X-Ray segments and VPC network interfaces take "*" resources by design: the AWS managed
# policies for exactly those actions and nothing more.
resource "aws_iam_role_policy_attachment" "function_xray" {
  for_each = var.enable_xray ? local.functions : {}

  role       = aws_iam_role.function[each.key].name
  policy_arn = "arn:${local.partition}:iam::aws:policy/AWSXRayDaemonWriteAccess"
}

resource "aws_iam_role_policy_attachment" "function_vpc" {
  for_each = local.use_vpc ? local.functions : {}

  role       = aws_iam_role.function[each.key].name
  policy_arn = "arn:${local.partition}:iam::aws:policy/service-role/AWSLambdaENIManagementAccess"
}

# --- roles AWS services assume ------------------------------------------------------------

locals {
  # Who may assume our roles: the service, and the condition that ties it to this account
  # (CloudTrail: to our trail). RDS Enhanced Monitoring takes no condition.
  assume_role = {
    lambda         = { service = "lambda.amazonaws.com", variable = "aws:SourceAccount", values = [local.account_id] }
    states         = { service = "states.amazonaws.com", variable = "aws:SourceAccount", values = [local.account_id] }
    events         = { service = "events.amazonaws.com", variable = "aws:SourceAccount", values = [local.account_id] }
    flow_logs      = { service = "vpc-flow-logs.amazonaws.com", variable = "aws:SourceAccount", values = [local.account_id] }
    cloudtrail     = { service = "cloudtrail.amazonaws.com", variable = "aws:SourceArn", values = [local.trail_arn] }
    rds_monitoring = { service = "monitoring.rds.amazonaws.com", variable = null, values = [] }
  }

  # The roles a service assumes to act for the stack (besides the functions' and the
  # workflows' own), each with one inline policy granting one thing: EventBridge starts
  # ingest and rotate-keys, CloudTrail and VPC flow logs write to their log groups.
  service_roles = merge(
    {
      events = {
        name        = "${local.name}-events-${local.region}"
        description = "EventBridge: starts the ${local.name}-ingest state machine"
        assumed_by  = "events"
        policy_name = "start-ingest"
        grant       = { sid = "StartIngest", actions = ["states:StartExecution"], resources = [aws_sfn_state_machine.workflow["ingest"].arn] }
      }
    },
    var.enable_rotation_schedule ? {
      rotation_schedule = {
        name        = "${local.name}-rotate-schedule-${local.region}"
        description = "EventBridge: starts the ${local.name}-rotate-keys state machine"
        assumed_by  = "events"
        policy_name = "start-rotate-keys"
        grant       = { sid = "StartRotation", actions = ["states:StartExecution"], resources = [aws_sfn_state_machine.workflow["rotate-keys"].arn] }
      }
    } : {},
    var.create_cloudtrail ? {
      trail = {
        name        = "${local.name}-trail-${local.region}"
        description = "CloudTrail: delivers ${local.trail_name} to CloudWatch Logs"
        assumed_by  = "cloudtrail"
        policy_name = "deliver-to-logs"
        grant       = { sid = null, actions = ["logs:CreateLogStream", "logs:PutLogEvents"], resources = ["${aws_cloudwatch_log_group.trail[0].arn}:*"] }
      }
    } : {},
    var.create_vpc ? {
      flow_logs = {
        name        = "${local.name}-flow-logs"
        description = null
        assumed_by  = "flow_logs"
        policy_name = "write-flow-logs"
        grant       = { sid = null, actions = ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"], resources = ["${module.log_groups["flow_logs"].arns["flow_logs"]}:*"] }
      }
    } : {},
  )
}

data "aws_iam_policy_document" "assume_role" {
  for_each = local.assume_role

  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = [each.value.service]
    }

    dynamic "condition" {
      for_each = each.value.variable == null ? [] : [each.value.variable]

      content {
        test     = "StringEquals"
        variable = condition.value
        values   = each.value.values
      }
    }
  }
}

resource "aws_iam_role" "service" {
  for_each = local.service_roles

  name               = each.value.name
  description        = each.value.description
  assume_role_policy = data.aws_iam_policy_document.assume_role[each.value.assumed_by].json
}

data "aws_iam_policy_document" "service_role" {
  for_each = local.service_roles

  statement {
    sid       = each.value.grant.sid
    actions   = each.value.grant.actions
    resources = each.value.grant.resources
  }
}

resource "aws_iam_role_policy" "service" {
  for_each = local.service_roles

  name   = each.value.policy_name
  role   = aws_iam_role.service[each.key].id
  policy = data.aws_iam_policy_document.service_role[each.key].json
}

# --- resource policies: TLS only ------------------------------------------------------------

# Every bucket, queue and topic policy refuses requests over plain HTTP with this statement:
# per resource, the actions it covers and its ARNs. Merged into each resource's own policy
# (first in the buckets', last in the others').
locals {
  tls_only = merge(
    { for k, b in aws_s3_bucket.this : "bucket_${k}" => { actions = ["s3:*"], resources = [b.arn, "${b.arn}/*"] } },
    { for k, q in aws_sqs_queue.failures : "queue_${k}" => { actions = ["sqs:*"], resources = [q.arn] } },
    local.create_log_bucket ? {
      bucket_access_logs = { actions = ["s3:*"], resources = [aws_s3_bucket.access_logs[0].arn, "${aws_s3_bucket.access_logs[0].arn}/*"] }
    } : {},
    var.create_alarms ? { topic_alarms = { actions = ["sns:Publish"], resources = [aws_sns_topic.alarms[0].arn] } } : {},
  )
}

data "aws_iam_policy_document" "tls_only" {
  for_each = local.tls_only

  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = each.value.actions
    resources = each.value.resources

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}
