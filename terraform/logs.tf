# The stack's log groups, with one retention (log_retention_days) and the data key
# (modules/log-groups): the functions', the workflows' (logging ALL), the database's exports
# (RDS would create them on first export with no retention and no key) and the VPC flow
# logs'. The trail's is in cloudtrail.tf.

module "log_groups" {
  source = "./modules/log-groups"
  for_each = {
    function  = { for k, name in local.function_names : k => "/aws/lambda/${name}" }
    workflow  = { for k, _ in local.workflows : k => "/aws/vendedlogs/states/${local.name}-${k}" }
    database  = var.create_database ? { for export in ["postgresql", "upgrade"] : export => "/aws/rds/instance/${local.name}/${export}" } : {}
    flow_logs = var.create_vpc ? { flow_logs = "/aws/vpc/${local.name}/flow-logs" } : {}
  }

  names          = each.value
  retention_days = var.log_retention_days
  kms_key_arn    = aws_kms_key.this["data"].arn
}
