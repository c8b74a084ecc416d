terraform {
  # 1.5 brings `check` blocks and the `import` block we rely on in docs/OPERATIONS.md.
  required_version = ">= 1.5.0"

  required_providers {
    aws = {
      source = "hashicorp/aws"
      # 5.100 is the version in the offline mirror; stay below 6.0 (breaking changes).
      version = ">= 5.60.0, < 6.0.0"
    }
  }
}
