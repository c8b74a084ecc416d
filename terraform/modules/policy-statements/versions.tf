# The Terraform version is the root's (terraform/versions.tf); optional() needs 1.3 or later.
terraform {
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.60.0, < 6.0.0"
    }
  }
}
