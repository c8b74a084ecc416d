# Private networking: the functions (and the database) live in private subnets with no
# route to the internet; VPC endpoints reach the AWS services they call, so no NAT.
# create_vpc = false with vpc_id set uses an existing VPC; with vpc_id empty the functions
# run outside any VPC (the local emulator only).

locals {
  interface_endpoints = var.create_vpc_endpoints && local.use_vpc ? toset([
    "kms", "states", "secretsmanager", "logs", "xray", "sts", "events",
  ]) : toset([])
  private_route_table_ids = var.create_vpc ? [aws_route_table.private[0].id] : var.private_route_table_ids
}

resource "aws_vpc" "this" {
  count = var.create_vpc ? 1 : 0

  cidr_block           = var.vpc_cidr
  enable_dns_support   = true
  enable_dns_hostnames = true

  tags = { Name = local.name }
}

# Lock down the default security group: nothing in or out.
resource "aws_default_security_group" "this" {
  count = var.create_vpc ? 1 : 0

  vpc_id = aws_vpc.this[0].id
}

resource "aws_subnet" "private" {
  count = var.create_vpc ? length(var.availability_zones) : 0

  vpc_id                  = aws_vpc.this[0].id
  availability_zone       = var.availability_zones[count.index]
  cidr_block              = cidrsubnet(var.vpc_cidr, 4, count.index)
  map_public_ip_on_launch = false

  tags = { Name = "${local.name}-private-${var.availability_zones[count.index]}", Tier = "private" }
}

resource "aws_route_table" "private" {
  count = var.create_vpc ? 1 : 0

  vpc_id = aws_vpc.this[0].id

  tags = { Name = "${local.name}-private" }
}

resource "aws_route_table_association" "private" {
  count = var.create_vpc ? length(var.availability_zones) : 0

  subnet_id      = aws_subnet.private[count.index].id
  route_table_id = aws_route_table.private[0].id
}

# --- flow logs ---------------------------------------------------------------------------

resource "aws_flow_log" "this" {
  count = var.create_vpc ? 1 : 0

  vpc_id          = aws_vpc.this[0].id
  traffic_type    = "ALL"
  log_destination = module.log_groups["flow_logs"].arns["flow_logs"]
  iam_role_arn    = aws_iam_role.service["flow_logs"].arn
}

# --- security groups -----------------------------------------------------------------------

resource "aws_security_group" "lambda" {
  count = local.use_vpc ? 1 : 0

  name        = "${local.name}-lambda"
  description = "PQFile functions: egress to the VPC endpoints and the database only"
  vpc_id      = local.vpc_id
}

resource "aws_security_group" "endpoints" {
  count = local.use_vpc ? 1 : 0

  name        = "${local.name}-endpoints"
  description = "PQFile interface VPC endpoints: HTTPS from the functions only"
  vpc_id      = local.vpc_id
}

locals {
  # The functions reach the interface endpoints, S3 (through the gateway endpoint's prefix
  # list) and the database (rds.tf); the endpoints and the database accept the functions only.
  function_egress = merge(
    local.use_vpc ? {
      endpoints = { description = "HTTPS to the interface endpoints", port = 443, group = aws_security_group.endpoints[0].id, prefix_list = null }
    } : {},
    local.use_vpc && var.create_vpc_endpoints ? {
      s3 = { description = "HTTPS to S3 through the gateway endpoint", port = 443, group = null, prefix_list = aws_vpc_endpoint.s3[0].prefix_list_id }
    } : {},
    local.use_vpc && var.create_database ? {
      database = { description = "PostgreSQL", port = 5432, group = aws_security_group.database[0].id, prefix_list = null }
    } : {},
  )
  function_ingress = merge(
    local.use_vpc ? { endpoints = { description = "HTTPS from the functions", port = 443, group = aws_security_group.endpoints[0].id } } : {},
    var.create_database ? { database = { description = "PostgreSQL from the functions", port = 5432, group = aws_security_group.database[0].id } } : {},
  )
}

resource "aws_vpc_security_group_egress_rule" "lambda" {
  for_each = local.function_egress

  security_group_id            = aws_security_group.lambda[0].id
  description                  = each.value.description
  ip_protocol                  = "tcp"
  from_port                    = each.value.port
  to_port                      = each.value.port
  referenced_security_group_id = each.value.group
  prefix_list_id               = each.value.prefix_list
}

resource "aws_vpc_security_group_ingress_rule" "from_lambda" {
  for_each = local.function_ingress

  security_group_id            = each.value.group
  description                  = each.value.description
  ip_protocol                  = "tcp"
  from_port                    = each.value.port
  to_port                      = each.value.port
  referenced_security_group_id = aws_security_group.lambda[0].id
}

# --- endpoints -----------------------------------------------------------------------------

# From inside the VPC only our own principals reach only our buckets: a compromised
# function cannot copy documents to a bucket elsewhere.
data "aws_iam_policy_document" "s3_endpoint" {
  statement {
    sid       = "OwnBucketsOwnPrincipals"
    actions   = ["s3:*"]
    resources = flatten([for b in aws_s3_bucket.this : [b.arn, "${b.arn}/*"]])

    principals {
      type        = "AWS"
      identifiers = ["*"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:PrincipalAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_vpc_endpoint" "s3" {
  count = local.use_vpc && var.create_vpc_endpoints ? 1 : 0

  vpc_id            = local.vpc_id
  service_name      = "com.amazonaws.${local.region}.s3"
  vpc_endpoint_type = "Gateway"
  route_table_ids   = local.private_route_table_ids
  policy            = data.aws_iam_policy_document.s3_endpoint.json

  tags = { Name = "${local.name}-s3" }
}

resource "aws_vpc_endpoint" "interface" {
  for_each = local.interface_endpoints

  vpc_id              = local.vpc_id
  service_name        = "com.amazonaws.${local.region}.${each.key}"
  vpc_endpoint_type   = "Interface"
  private_dns_enabled = true
  subnet_ids          = local.private_subnet_ids
  security_group_ids  = [aws_security_group.endpoints[0].id]

  tags = { Name = "${local.name}-${each.key}" }
}
