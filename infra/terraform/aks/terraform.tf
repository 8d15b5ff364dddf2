terraform {
  required_version = ">= 1.9, < 2.0"

  required_providers {
    azurerm = {
      source  = "hashicorp/azurerm"
      version = "~> 4.30"
    }
  }

  # Filled at init time: terraform init -backend-config=backend.hcl (see README.md).
  backend "azurerm" {}
}
