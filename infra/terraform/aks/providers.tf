# Deployable root configuration: the subscription comes from ARM_SUBSCRIPTION_ID (see README.md).
provider "azurerm" {
  features {}
}
